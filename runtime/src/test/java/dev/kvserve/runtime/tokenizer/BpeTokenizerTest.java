package dev.kvserve.runtime.tokenizer;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Byte-level BPE (tokenizer.ggml.model = gpt2, and tokenizer.json ByteLevel) on a vocabulary trained here. */
class BpeTokenizerTest {
    private static TinyBpe bpe;
    private static Tokenizer fromGguf;
    private static Tokenizer fromJson;

    @BeforeAll
    static void train(@TempDir Path dir) throws IOException {
        String corpus = TestFiles.text("tinystories_val.txt").substring(0, 40_000)
                + " 日本語のテキストです。東京は大きい都市です。 Ελληνικά κείμενα. 🙂🙂 👍 2024-05-17 3.14159 I'm you're we'll";
        bpe = new TinyBpe(corpus, 300);
        fromGguf = Tokenizers.fromGgufMetadata(bpe.ggufMetadata());
        fromJson = Tokenizers.fromHuggingFace(bpe.writeTokenizerJson(dir), null);
    }

    @Test
    void trainedMergesAreUsed() {
        assertThat(bpe.merges).hasSize(300);
        int[] ids = fromGguf.encode("Once upon a time", false, false);
        assertThat(fromGguf.decode(ids)).isEqualTo("Once upon a time");
        assertThat(ids.length).isLessThan("Once upon a time".length() / 2);
        assertThat(fromGguf.piece(ids[1])).isEqualTo("Ġupon");
        assertThat(new String(fromGguf.tokenBytes(ids[1]))).isEqualTo(" upon");
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 4, 5, 6, 7, 8})
    void encodeMatchesNaiveBpeAndTokenizerJsonAndRoundTrips(int seed) {
        String text = TinyBpe.randomText(new SplittableRandom(seed), 2_000);
        int[] ids = fromGguf.encode(text, false, false);
        assertThat(Arrays.stream(ids).boxed().toList()).isEqualTo(bpe.naiveEncode(text));
        assertThat(fromJson.encode(text, false, false)).isEqualTo(ids);
        assertThat(fromGguf.decode(ids)).isEqualTo(text);
    }

    @Test
    void knownStringsRoundTrip() {
        for (String text : new String[]{"Hello world", "I'm here, aren't you?", "12345678 apples", "日本語のテキスト",
                "emoji 🙂👍🏽 mix", "family 👨‍👩‍👧", "tabs\tand\nnewlines\r\n", "  leading", "trailing  ", "Привет мир", "", " "}) {
            int[] ids = fromGguf.encode(text, true, false);
            assertThat(ids[0]).isEqualTo(bpe.id("<|begin_of_text|>"));
            assertThat(fromGguf.decode(ids)).as(text).isEqualTo(text);
            assertThat(fromJson.encode(text, true, false)).as(text).isEqualTo(ids);
        }
    }

    /**
     * Ids Hugging Face tokenizers 0.23.2 gives for these strings with the tokenizer.json this test
     * writes (checked once by hand with {@code Tokenizer.from_file(...).encode(text).ids}).
     */
    @Test
    void idsMatchHuggingFaceTokenizers() {
        assertThat(fromJson.encode("Once upon a time, Lily's 12345 🙂!", true, false)).containsExactly(
                556, 380, 387, 258, 360, 44, 384, 373, 32, 49, 50, 51, 52, 53, 32, 240, 159, 153, 130, 33);
        // Hugging Face always matches added tokens: that is parseSpecial=true here.
        assertThat(fromJson.encode("<|im_start|>user\n日本語<tool><|im_end|>", true, true)).containsExactly(
                556, 559, 117, 115, 281, 10, 230, 151, 165, 230, 156, 172, 232, 170, 158, 561, 560);
        assertThat(fromGguf.encode("<|im_start|>user\n日本語<tool><|im_end|>", true, true)).containsExactly(
                556, 559, 117, 115, 281, 10, 230, 151, 165, 230, 156, 172, 232, 170, 158, 561, 560);
    }

    @Test
    void specialTokens() {
        int imStart = bpe.id("<|im_start|>");
        int imEnd = bpe.id("<|im_end|>");
        int tool = bpe.id(TinyBpe.USER_DEFINED);
        String chat = "<|im_start|>user\nhi<tool><|im_end|>";
        int[] parsed = fromGguf.encode(chat, false, true);
        assertThat(parsed[0]).isEqualTo(imStart);
        assertThat(parsed[parsed.length - 1]).isEqualTo(imEnd);
        assertThat(parsed).contains(tool);
        assertThat(fromJson.encode(chat, false, true)).isEqualTo(parsed);

        // Without parseSpecial control text is plain text, but user-defined tokens still match.
        int[] literal = fromGguf.encode(chat, false, false);
        assertThat(literal).doesNotContain(imStart, imEnd).contains(tool);
        assertThat(fromGguf.decode(literal)).isEqualTo(chat);
        assertThat(fromGguf.decode(parsed)).isEqualTo("user\nhi<tool>");
        assertThat(fromGguf.decode(parsed, false)).isEqualTo(chat);

        assertThat(fromGguf.endOfGenerationIds()).containsExactlyInAnyOrder(
                bpe.id("<|end_of_text|>"), bpe.id("<|eot_id|>"), imEnd);
        assertThat(fromJson.endOfGenerationIds()).contains(bpe.id("<|eot_id|>"), imEnd);
        assertThat(fromGguf.isSpecial(imStart)).isTrue();
        assertThat(fromGguf.isSpecial(tool)).isFalse();
        assertThat(fromGguf.tokenType(tool)).isEqualTo(TokenType.USER_DEFINED);
        assertThat(fromJson.bos()).isEqualTo(bpe.id("<|begin_of_text|>"));
        assertThat(fromJson.addsBos()).isTrue();
    }

    @Test
    void streamingDecoderHoldsBackSplitCharacters() {
        String text = "猫🙂 é👍🏽!";
        int[] ids = fromGguf.encode(text, false, false);
        StreamingDecoder decoder = new StreamingDecoder(fromGguf);
        StringBuilder streamed = new StringBuilder();
        int heldBack = 0;
        for (int id : ids) {
            String delta = decoder.append(id);
            assertThat(delta).doesNotContain("\uFFFD");
            if (decoder.hasPendingBytes()) {
                heldBack++;
            }
            streamed.append(delta);
        }
        streamed.append(decoder.finish());
        assertThat(streamed.toString()).isEqualTo(text);
        assertThat(heldBack).as("some token ends inside a character").isPositive();
    }

    @Test
    void badMetadataIsReportedClearly() {
        var md = bpe.ggufMetadata();
        md.remove("tokenizer.ggml.merges");
        assertThatThrownBy(() -> Tokenizers.fromGgufMetadata(md)).hasMessageContaining("tokenizer.ggml.merges");
        var md2 = bpe.ggufMetadata();
        md2.put("tokenizer.ggml.pre", "nope");
        assertThatThrownBy(() -> Tokenizers.fromGgufMetadata(md2)).hasMessageContaining("nope");
        var md3 = bpe.ggufMetadata();
        md3.put("tokenizer.ggml.model", "t5");
        assertThatThrownBy(() -> Tokenizers.fromGgufMetadata(md3)).hasMessageContaining("t5");
        var md4 = bpe.ggufMetadata();
        md4.put("tokenizer.ggml.bos_token_id", 100_000);
        assertThatThrownBy(() -> Tokenizers.fromGgufMetadata(md4)).hasMessageContaining("100000");
        assertThatThrownBy(() -> fromGguf.decode(new int[]{1, -5})).hasMessageContaining("-5");
    }

    @Test
    void badTokenizerJsonIsReportedClearly(@TempDir Path dir) throws IOException {
        assertThatThrownBy(() -> Tokenizers.fromHuggingFace(dir.resolve("missing.json"), null))
                .isInstanceOf(IOException.class).hasMessageContaining("missing.json");
        Path wordPiece = java.nio.file.Files.writeString(dir.resolve("wp.json"), "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
        assertThatThrownBy(() -> Tokenizers.fromHuggingFace(wordPiece, null)).hasMessageContaining("WordPiece");
        Path broken = java.nio.file.Files.writeString(dir.resolve("broken.json"), "{\"model\": ");
        assertThatThrownBy(() -> Tokenizers.fromHuggingFace(broken, null)).isInstanceOf(IOException.class).hasMessageContaining("broken.json");
        Path badMerge = java.nio.file.Files.writeString(dir.resolve("merge.json"),
                "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}");
        assertThatThrownBy(() -> Tokenizers.fromHuggingFace(badMerge, null)).hasMessageContaining("'ab'");
    }
}
