package dev.kvserve.runtime.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The split regexes against splits computed by Python's {@code regex} module (a PCRE-style engine
 * with Unicode classes, as Hugging Face's Oniguruma), stored in pretokenizer_splits.json.
 */
class PreTokenizerTest {
    private static final Map<String, PreTokenizerRegexes.PreType> TYPES = Map.of(
            "llama3", PreTokenizerRegexes.PreType.LLAMA3,
            "qwen2", PreTokenizerRegexes.PreType.QWEN2,
            "gpt2", PreTokenizerRegexes.PreType.GPT2,
            "smollm", PreTokenizerRegexes.PreType.SMOLLM,
            "default", PreTokenizerRegexes.PreType.DEFAULT);

    @Test
    void splitsMatchPythonRegexOracle() throws IOException {
        JsonNode cases;
        try (InputStream in = getClass().getResourceAsStream("/tokenizer/pretokenizer_splits.json")) {
            cases = new ObjectMapper().readTree(in).path("cases");
        }
        int checked = 0;
        for (Map.Entry<String, PreTokenizerRegexes.PreType> type : TYPES.entrySet()) {
            TextPipeline pipeline = type.getValue().pipeline();
            for (JsonNode sample : cases.path(type.getKey())) {
                String text = sample.get(0).asText();
                List<String> expected = new ArrayList<>();
                sample.get(1).forEach(piece -> expected.add(piece.asText()));
                assertThat(pipeline.words(text, true, true)).as(type.getKey() + " on '" + text + "'").isEqualTo(expected);
                checked++;
            }
        }
        assertThat(checked).isEqualTo(100);
    }

    @Test
    void llama3KnownSplits() {
        TextPipeline llama3 = PreTokenizerRegexes.PreType.LLAMA3.pipeline();
        assertThat(llama3.words("I'm", true, true)).containsExactly("I", "'m");
        assertThat(llama3.words("1234567", true, true)).containsExactly("123", "456", "7");
        assertThat(llama3.words("日本語テキスト", true, true)).containsExactly("日本語テキスト");
        assertThat(llama3.words("ok 🙂🙂!", true, true)).containsExactly("ok", " 🙂🙂!");
        assertThat(llama3.words("a \n\n  b", true, true)).containsExactly("a", " \n\n", " ", " b");
    }

    @Test
    void ggufPreNamesMapToRegexFamilies() {
        assertThat(PreTokenizerRegexes.forGgufPre("llama-bpe")).isEqualTo(PreTokenizerRegexes.PreType.LLAMA3);
        assertThat(PreTokenizerRegexes.forGgufPre("qwen2")).isEqualTo(PreTokenizerRegexes.PreType.QWEN2);
        assertThat(PreTokenizerRegexes.forGgufPre("smollm")).isEqualTo(PreTokenizerRegexes.PreType.SMOLLM);
        assertThat(PreTokenizerRegexes.forGgufPre("gpt-2")).isEqualTo(PreTokenizerRegexes.PreType.GPT2);
        assertThat(PreTokenizerRegexes.forGgufPre(null)).isEqualTo(PreTokenizerRegexes.PreType.DEFAULT);
        assertThatThrownBy(() -> PreTokenizerRegexes.forGgufPre("klingon"))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("klingon");
    }

    @Test
    void splitBehaviorsFollowHuggingFace() {
        java.util.regex.Pattern dash = java.util.regex.Pattern.compile("-");
        String text = "the-final--countdown";
        assertThat(split(dash, TextPipeline.SplitBehavior.ISOLATED, text)).containsExactly("the", "-", "final", "-", "-", "countdown");
        assertThat(split(dash, TextPipeline.SplitBehavior.REMOVED, text)).containsExactly("the", "final", "countdown");
        assertThat(split(dash, TextPipeline.SplitBehavior.MERGED_WITH_PREVIOUS, text)).containsExactly("the-", "final-", "-", "countdown");
        assertThat(split(dash, TextPipeline.SplitBehavior.MERGED_WITH_NEXT, text)).containsExactly("the", "-final", "-", "-countdown");
        assertThat(split(dash, TextPipeline.SplitBehavior.CONTIGUOUS, text)).containsExactly("the", "-", "final", "--", "countdown");
    }

    private static List<String> split(java.util.regex.Pattern pattern, TextPipeline.SplitBehavior behavior, String text) {
        List<String> out = new ArrayList<>();
        TextPipeline.splitByRegex(pattern, behavior, text, out);
        return out;
    }
}
