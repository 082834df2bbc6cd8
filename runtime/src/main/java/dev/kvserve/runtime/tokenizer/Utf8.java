package dev.kvserve.runtime.tokenizer;

/**
 * UTF-8 decoding that can stop before an incomplete trailing sequence. Ill-formed input becomes one
 * U+FFFD per maximal subpart (Unicode §3.9, the same policy as java.nio's decoder), so a byte
 * sequence is replaced only once it is definitely invalid.
 */
final class Utf8 {
    static final char REPLACEMENT = '\uFFFD';

    private Utf8() {
    }

    static String decode(byte[] bytes, int length) {
        StringBuilder text = new StringBuilder(length);
        decode(bytes, length, true, text);
        return text.toString();
    }

    /**
     * Appends the decoded text of {@code bytes[0, length)} to {@code out} and returns how many bytes
     * were consumed. Unless {@code endOfInput}, a trailing sequence that is a well-formed prefix of a
     * longer character is left unconsumed for the caller to complete later.
     */
    static int decode(byte[] bytes, int length, boolean endOfInput, StringBuilder out) {
        int i = 0;
        while (i < length) {
            int lead = bytes[i] & 0xFF;
            if (lead < 0x80) {
                out.append((char) lead);
                i++;
                continue;
            }
            int continuationCount;
            int codePoint;
            // Table 3-7: the second byte's range depends on the lead byte (no overlongs, no surrogates, ≤ U+10FFFF).
            int low = 0x80;
            int high = 0xBF;
            if (lead >= 0xC2 && lead <= 0xDF) {
                continuationCount = 1;
                codePoint = lead & 0x1F;
            } else if (lead >= 0xE0 && lead <= 0xEF) {
                continuationCount = 2;
                codePoint = lead & 0x0F;
                if (lead == 0xE0) low = 0xA0;
                if (lead == 0xED) high = 0x9F;
            } else if (lead >= 0xF0 && lead <= 0xF4) {
                continuationCount = 3;
                codePoint = lead & 0x07;
                if (lead == 0xF0) low = 0x90;
                if (lead == 0xF4) high = 0x8F;
            } else {
                out.append(REPLACEMENT);
                i++;
                continue;
            }
            int seen = 1;
            boolean malformed = false;
            while (seen <= continuationCount && i + seen < length) {
                int next = bytes[i + seen] & 0xFF;
                if (next < low || next > high) {
                    malformed = true;
                    break;
                }
                codePoint = (codePoint << 6) | (next & 0x3F);
                low = 0x80;
                high = 0xBF;
                seen++;
            }
            if (malformed) {
                out.append(REPLACEMENT);
                i += seen;
            } else if (seen <= continuationCount) {
                if (!endOfInput) {
                    return i;
                }
                out.append(REPLACEMENT);
                i = length;
            } else {
                out.appendCodePoint(codePoint);
                i += seen;
            }
        }
        return length;
    }
}
