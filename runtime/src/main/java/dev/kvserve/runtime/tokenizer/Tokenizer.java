package dev.kvserve.runtime.tokenizer;

import java.util.Set;

/**
 * Text ⇄ token ids for one model vocabulary. Implementations are immutable and thread-safe;
 * per-sequence streaming state lives in {@link StreamingDecoder}.
 */
public interface Tokenizer {

    /**
     * Encodes text into token ids.
     *
     * @param addBos       prepend the BOS token when the model is configured to add one
     *                     ({@link #addsBos()}); a model without BOS (Qwen2) never gets one
     * @param parseSpecial control tokens written in the text ({@code <|im_start|>}, {@code <s>})
     *                     become their ids, as a chat template needs; when false they are encoded
     *                     as ordinary text. User-defined added tokens are always matched, as in
     *                     llama.cpp and Hugging Face tokenizers.
     */
    int[] encode(String text, boolean addBos, boolean parseSpecial);

    /** {@code encode(text, true, false)}: a plain prompt with BOS when the model wants it. */
    default int[] encode(String text) {
        return encode(text, true, false);
    }

    /**
     * Inverse of {@link #encode}: special tokens (control, unknown, unused) are left out and the
     * one leading space a SentencePiece-style space prefix added is removed. Invalid UTF-8 becomes
     * U+FFFD. For streamed output use {@link StreamingDecoder}, which never strips that space.
     */
    String decode(int[] ids);

    /** As {@link #decode(int[])}; with {@code skipSpecial=false} special tokens render as their text. */
    String decode(int[] ids, boolean skipSpecial);

    /**
     * The raw bytes a token stands for: byte-fallback {@code <0xNN>} is that byte, SentencePiece
     * {@code ▁} is a space, GPT-2 byte-level characters are their bytes; control and added tokens
     * are the UTF-8 of their text. May be an incomplete UTF-8 sequence.
     */
    byte[] tokenBytes(int id);

    /** The token's text as stored in the vocabulary (e.g. {@code ▁the}, {@code Ġthe}, {@code <0x0A>}). */
    String piece(int id);

    /** Id of the vocabulary entry whose stored text is exactly {@code piece}, or -1. */
    int tokenId(String piece);

    int vocabSize();

    TokenType tokenType(int id);

    /** BOS id, or -1 if the model has none. */
    int bos();

    /** EOS id, or -1 if the model has none. */
    int eos();

    /** Whether {@code encode(text, true, ...)} puts BOS first. */
    boolean addsBos();

    /** Control, unknown and unused tokens: never part of generated text. */
    boolean isSpecial(int id);

    /** Tokens that end a generation: EOS, EOT/EOM and end-of-turn markers such as {@code <|eot_id|>}, {@code <|im_end|>}. */
    Set<Integer> endOfGenerationIds();

    default boolean isEndOfGeneration(int id) {
        return endOfGenerationIds().contains(id);
    }
}
