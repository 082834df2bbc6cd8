package dev.kvserve.runtime.tokenizer;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** SentencePiece-style (tokenizer.ggml.model = llama) on stories260K and on hand-made vocabularies. */
class SpmTokenizerTest {
    private static Map<String, Object> stories260kMetadata;
    private static Tokenizer stories260k;

    @BeforeAll
    static void load() throws IOException {
        stories260kMetadata = TestFiles.ggufMetadata(TestFiles.model("stories260K.gguf"));
        stories260k = Tokenizers.fromGgufMetadata(stories260kMetadata);
    }

    /** llm_tokenizer_spm written the slow obvious way: merge the best-scoring pair, leftmost on ties. */
    private static List<Integer> naiveSpm(Map<String, Object> md, String text) {
        String[] pieces = (String[]) md.get("tokenizer.ggml.tokens");
        float[] scores = (float[]) md.get("tokenizer.ggml.scores");
        Map<String, Integer> ids = new HashMap<>();
        for (int i = 0; i < pieces.length; i++) ids.put(pieces[i], i);
        String escaped = (" " + text).replace(' ', '\u2581');
        List<String> symbols = new ArrayList<>();
        escaped.codePoints().forEach(cp -> symbols.add(new String(Character.toChars(cp))));
        while (true) {
            int best = -1;
            float bestScore = Float.NEGATIVE_INFINITY;
            for (int i = 0; i + 1 < symbols.size(); i++) {
                Integer id = ids.get(symbols.get(i) + symbols.get(i + 1));
                if (id != null && scores[id] > bestScore) {
                    best = i;
                    bestScore = scores[id];
                }
            }
            if (best < 0) break;
            symbols.set(best, symbols.get(best) + symbols.remove(best + 1));
        }
        List<Integer> out = new ArrayList<>();
        for (String symbol : symbols) {
            Integer id = ids.get(symbol);
            if (id != null) {
                out.add(id);
            } else {
                for (byte b : symbol.getBytes(StandardCharsets.UTF_8)) out.add(ids.get(String.format("<0x%02X>", b & 0xFF)));
            }
        }
        return out;
    }

    @ParameterizedTest
    @ValueSource(ints = {11, 12, 13, 14, 15, 16})
    void heapMergeEqualsNaiveMergeAndRoundTrips(int seed) {
        String text = TinyBpe.randomText(new SplittableRandom(seed), 1_500);
        int[] ids = stories260k.encode(text, false, false);
        assertThat(java.util.Arrays.stream(ids).boxed().toList()).isEqualTo(naiveSpm(stories260kMetadata, text));
        assertThat(stories260k.decode(ids)).isEqualTo(text);
    }

    @Test
    void emojiFallsBackToByteTokensAndStreamsWhole() {
        int[] ids = stories260k.encode("Hi 🙂", false, false);
        // ▁H i ▁ then F0 9F 99 82 as <0xNN> tokens (ids 3 + byte).
        assertThat(ids).endsWith(3 + 0xF0, 3 + 0x9F, 3 + 0x99, 3 + 0x82);
        StreamingDecoder decoder = new StreamingDecoder(stories260k);
        List<String> deltas = new ArrayList<>();
        for (int id : ids) deltas.add(decoder.append(id));
        assertThat(deltas.subList(deltas.size() - 4, deltas.size())).containsExactly("", "", "", "🙂");
        assertThat(String.join("", deltas)).isEqualTo(" Hi 🙂");
        assertThat(decoder.finish()).isEmpty();
    }

    @Test
    void streamingDecoderReplacesOnlyWhatIsDefinitelyInvalid() {
        int byteToken = 3;
        StreamingDecoder decoder = new StreamingDecoder(stories260k);
        assertThat(decoder.append(byteToken + 0xE2)).isEmpty();
        assertThat(decoder.append(byteToken + 0x82)).isEmpty();
        // 0x41 cannot continue E2 82: the two bytes are one ill-formed subpart.
        assertThat(decoder.append(byteToken + 0x41)).isEqualTo("\uFFFDA");
        assertThat(decoder.append(byteToken + 0xF0)).isEmpty();
        assertThat(decoder.append(stories260k.bos())).isEmpty();
        assertThat(decoder.finish()).isEqualTo("\uFFFD");
        assertThat(decoder.hasPendingBytes()).isFalse();
    }

    private static Map<String, Object> synthetic(List<String> pieces, float[] scores, int[] types) {
        Map<String, Object> md = new HashMap<>();
        md.put("tokenizer.ggml.model", "llama");
        md.put("tokenizer.ggml.tokens", pieces);
        md.put("tokenizer.ggml.scores", scores);
        md.put("tokenizer.ggml.token_type", types);
        return md;
    }

    @Test
    void highestScoreMergesFirstAndTiesGoLeft() {
        List<String> pieces = List.of("<unk>", "<s>", "</s>", "▁", "a", "b", "ab", "ba", "▁a");
        float[] scores = {0, 0, 0, -1, -1, -1, -3, -2, -5};
        int[] types = {2, 3, 3, 1, 1, 1, 1, 1, 1};
        Map<String, Object> md = synthetic(pieces, scores, types);
        md.put("tokenizer.ggml.add_space_prefix", false);
        Tokenizer t = Tokenizers.fromGgufMetadata(md);
        // "aba": "ba" (-2) beats "ab" (-3).
        assertThat(t.encode("aba", false, false)).containsExactly(4, 7);
        // "abab": only "ab" and "ba" compete; ba at 1 first → a, ba, b.
        assertThat(t.encode("abab", false, false)).containsExactly(4, 7, 5);
        // With equal scores the leftmost pair merges first.
        float[] tied = {0, 0, 0, -1, -1, -1, -2, -2, -5};
        Tokenizer tiedTokenizer = Tokenizers.fromGgufMetadata(synthetic(pieces, tied, types));
        assertThat(tiedTokenizer.encode("aba", false, false)).containsExactly(3, 6, 4);
        // No byte tokens: an unknown run becomes one <unk>; BOS from the llama.cpp default id 1.
        assertThat(tiedTokenizer.encode("a猫猫b", true, false)).containsExactly(1, 8, 0, 5);
        assertThat(tiedTokenizer.decode(new int[]{1, 8, 0, 5})).isEqualTo("ab");
    }

    @Test
    void unknownCharacterWithoutUnkTokenIsAClearError() {
        Map<String, Object> md = synthetic(List.of("<s>", "</s>", "▁", "a"), new float[4], new int[]{3, 3, 1, 1});
        md.put("tokenizer.ggml.unknown_token_id", -1L);
        md.put("tokenizer.ggml.bos_token_id", 0);
        md.put("tokenizer.ggml.eos_token_id", 1);
        Tokenizer t = Tokenizers.fromGgufMetadata(md);
        assertThat(t.encode("a a", true, false)).containsExactly(0, 2, 3, 2, 3);
        assertThatThrownBy(() -> t.encode("a猫", false, false))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("U+732B");
    }

    @Test
    void metadataArraysMayComeAsListsOrArrays() {
        Map<String, Object> md = new HashMap<>(stories260kMetadata);
        float[] scores = (float[]) md.get("tokenizer.ggml.scores");
        List<Double> boxedScores = new ArrayList<>();
        for (float s : scores) boxedScores.add((double) s);
        md.put("tokenizer.ggml.scores", boxedScores);
        md.put("tokenizer.ggml.token_type", java.util.Arrays.stream((int[]) md.get("tokenizer.ggml.token_type")).boxed().toList());
        md.put("tokenizer.ggml.tokens", List.of((String[]) md.get("tokenizer.ggml.tokens")));
        md.put("tokenizer.ggml.bos_token_id", 1);
        Tokenizer t = Tokenizers.fromGgufMetadata(md);
        assertThat(t.encode("Once upon a time")).containsExactly(stories260k.encode("Once upon a time"));
        md.put("tokenizer.ggml.scores", "not an array");
        assertThatThrownBy(() -> Tokenizers.fromGgufMetadata(md)).hasMessageContaining("tokenizer.ggml.scores");
    }
}
