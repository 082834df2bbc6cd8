package dev.kvserve.runtime.tokenizer;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.assertj.core.api.Assertions.assertThat;

/** The shared models are the oracle: llama.cpp's token ids and token counts. */
class SharedModelTokenizerTest {
    private static Tokenizer stories260k;
    private static Tokenizer tiny656kGguf;
    private static Tokenizer tiny656kHf;

    @BeforeAll
    static void load() throws IOException {
        stories260k = Tokenizers.fromGgufMetadata(TestFiles.ggufMetadata(TestFiles.model("stories260K.gguf")));
        tiny656kGguf = Tokenizers.fromGgufMetadata(
                TestFiles.ggufMetadata(TestFiles.model("tinystories-656k/tinystories-656k-f32.gguf")));
        tiny656kHf = Tokenizers.fromHuggingFace(TestFiles.model("tinystories-656k/tokenizer.json"),
                TestFiles.model("tinystories-656k/tokenizer_config.json"));
    }

    /** "prompt_tokens(5): 1 403 407 261 378" in the greedy reference files. */
    static int[] referencePromptIds(String referenceFile) throws IOException {
        String first = Files.readAllLines(TestFiles.model("reference").resolve(referenceFile)).get(0);
        return Arrays.stream(first.substring(first.indexOf(':') + 1).trim().split(" ")).mapToInt(Integer::parseInt).toArray();
    }

    @Test
    void promptIdsMatchLlamaCppReferences() throws IOException {
        assertThat(stories260k.encode("Once upon a time")).containsExactly(referencePromptIds("greedy.stories260K.txt"));
        assertThat(tiny656kGguf.encode("Once upon a time")).containsExactly(referencePromptIds("greedy.tinystories-656k-f32.txt"));
        assertThat(tiny656kHf.encode("Once upon a time")).containsExactly(referencePromptIds("greedy.tinystories-656k-f32.txt"));
    }

    @Test
    void specialIdsAndFlags() {
        assertThat(stories260k.vocabSize()).isEqualTo(512);
        assertThat(stories260k.bos()).isEqualTo(1);
        assertThat(stories260k.eos()).isEqualTo(2);
        assertThat(stories260k.addsBos()).isTrue();
        assertThat(stories260k.endOfGenerationIds()).containsExactly(2);
        assertThat(stories260k.tokenType(3)).isEqualTo(TokenType.BYTE);
        assertThat(stories260k.tokenBytes(3 + 0x0A)).containsExactly(0x0A);
        assertThat(new String(stories260k.tokenBytes(403))).isEqualTo(" Once");
        assertThat(stories260k.isSpecial(1)).isTrue();
        assertThat(stories260k.isSpecial(403)).isFalse();

        for (Tokenizer t : new Tokenizer[]{tiny656kGguf, tiny656kHf}) {
            assertThat(t.vocabSize()).isEqualTo(2048);
            assertThat(t.bos()).isEqualTo(1);
            assertThat(t.eos()).isEqualTo(2);
            assertThat(t.endOfGenerationIds()).containsExactly(2);
            assertThat(t.piece(1)).isEqualTo("<|start_story|>");
            assertThat(new String(t.tokenBytes(282))).isEqualTo("upon a tim");
        }
    }

    @ParameterizedTest
    @CsvSource({
            "tinystories_val.txt, 393019",
            "tinystories_val_ascii.txt, 392244",
            "wiki.test.raw, 809290",
            "pride_and_prejudice.txt, 389136"})
    void stories260kTokenCountsMatchLlamaCpp(String file, int expectedWithBos) throws IOException {
        String text = TestFiles.text(file);
        int[] ids = stories260k.encode(text);
        assertThat(ids.length).isEqualTo(expectedWithBos);
        assertThat(ids[0]).isEqualTo(1);
        // Byte fallback makes this vocabulary lossless.
        assertThat(stories260k.decode(ids)).isEqualTo(text);
    }

    @Test
    void tinystories656kGgufAndTokenizerJsonAgreeWithLlamaCppCount() throws IOException {
        String text = TestFiles.text("tinystories_val_ascii.txt");
        int[] fromGguf = tiny656kGguf.encode(text);
        int[] fromJson = tiny656kHf.encode(text);
        assertThat(fromGguf.length).isEqualTo(193013);
        assertThat(fromJson).isEqualTo(fromGguf);
        assertThat(tiny656kGguf.decode(fromGguf)).isEqualTo(text);
        assertThat(tiny656kHf.decode(fromJson)).isEqualTo(text);
    }

    @Test
    void charactersOutsideTheTinyVocabularyBecomeOneUnknownPerRun() throws IOException {
        // No <0xNN> tokens: llama.cpp aborts here, Hugging Face (fuse_unk) gives one <unk> per run.
        String text = "He said “hi” / 猫🙂.";
        int[] fromGguf = tiny656kGguf.encode(text, false, false);
        int[] fromJson = tiny656kHf.encode(text, false, false);
        assertThat(fromJson).isEqualTo(fromGguf);
        assertThat(Arrays.stream(fromGguf).filter(id -> id == 0).count()).isEqualTo(4);
        assertThat(tiny656kGguf.decode(fromGguf)).isEqualTo("He said hi  .");

        String full = TestFiles.text("tinystories_val.txt");
        assertThat(tiny656kHf.encode(full)).isEqualTo(tiny656kGguf.encode(full));
    }

    @Test
    void parseSpecialTurnsControlTextIntoIds() {
        int[] parsed = tiny656kGguf.encode("<|start_story|>Once upon a time<|end_story|>", false, true);
        assertThat(parsed).containsExactly(1, 80, 147, 201, 282, 57, 2);
        int[] literal = tiny656kGguf.encode("<|end_story|>", false, false);
        assertThat(literal).doesNotContain(2);
        assertThat(tiny656kGguf.decode(literal)).isEqualTo("<|end_story|>");
        assertThat(stories260k.encode("</s>", false, true)).containsExactly(2);
    }
}
