package dev.kvserve.runtime.tokenizer;

import java.util.Arrays;

/**
 * Turns one sequence's generated token ids into text deltas. A character whose UTF-8 bytes are
 * split over several tokens (byte-fallback or byte-level emoji, CJK) is held back until complete,
 * so a delta never contains a broken character; bytes become U+FFFD only once they are definitely
 * invalid, or at {@link #finish()}. Not thread-safe: one instance per sequence.
 */
public final class StreamingDecoder {
    private final Tokenizer tokenizer;
    private final boolean skipSpecial;
    private byte[] pending = new byte[16];
    private int pendingLength;

    /** Special tokens (EOS, {@code <|im_end|>}) produce no text. */
    public StreamingDecoder(Tokenizer tokenizer) {
        this(tokenizer, true);
    }

    public StreamingDecoder(Tokenizer tokenizer, boolean skipSpecial) {
        if (tokenizer == null) {
            throw new IllegalArgumentException("tokenizer is null");
        }
        this.tokenizer = tokenizer;
        this.skipSpecial = skipSpecial;
    }

    /** Adds one token and returns the text that became complete (possibly empty). */
    public String append(int tokenId) {
        if (skipSpecial && tokenizer.isSpecial(tokenId)) {
            return "";
        }
        byte[] bytes = tokenizer.tokenBytes(tokenId);
        if (pendingLength + bytes.length > pending.length) {
            pending = Arrays.copyOf(pending, Math.max(pending.length * 2, pendingLength + bytes.length));
        }
        System.arraycopy(bytes, 0, pending, pendingLength, bytes.length);
        pendingLength += bytes.length;
        StringBuilder delta = new StringBuilder(pendingLength);
        int consumed = Utf8.decode(pending, pendingLength, false, delta);
        System.arraycopy(pending, consumed, pending, 0, pendingLength - consumed);
        pendingLength -= consumed;
        return delta.toString();
    }

    /** Ends the sequence: bytes still waiting for the rest of a character become U+FFFD. */
    public String finish() {
        String rest = Utf8.decode(pending, pendingLength);
        pendingLength = 0;
        return rest;
    }

    /** Whether bytes of an incomplete character are being held back. */
    public boolean hasPendingBytes() {
        return pendingLength > 0;
    }
}
