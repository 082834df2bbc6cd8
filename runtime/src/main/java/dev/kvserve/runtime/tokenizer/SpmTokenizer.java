package dev.kvserve.runtime.tokenizer;

import java.nio.charset.StandardCharsets;

/**
 * SentencePiece-style tokenizer ({@code tokenizer.ggml.model = llama}), the algorithm of llama.cpp's
 * {@code llm_tokenizer_spm}: start from single characters and repeatedly merge the adjacent pair
 * whose concatenation is the vocabulary token with the highest score (leftmost on ties). Characters
 * left without a token fall back to {@code <0xNN>} byte tokens, or to the unknown token when the
 * vocabulary has none (a run of such characters becomes one unknown token, as SentencePiece does).
 */
final class SpmTokenizer extends BaseTokenizer {
    private static final char SPACE_MARK = '\u2581';

    private final float[] scores;
    private final boolean addSpacePrefix;
    private final PieceIndex pieceIndex;
    /** Token id of {@code <0xNN>} for each byte, -1 where the vocabulary lacks it. */
    private final int[] byteTokens = new int[256];

    SpmTokenizer(Vocabulary vocab, float[] scores, boolean addSpacePrefix) {
        super(vocab, addSpacePrefix);
        if (scores.length != vocab.size()) {
            throw new IllegalArgumentException("tokenizer has " + scores.length + " scores for " + vocab.size() + " tokens");
        }
        this.scores = scores;
        this.addSpacePrefix = addSpacePrefix;
        this.pieceIndex = new PieceIndex(vocab.pieces);
        for (int b = 0; b < 256; b++) {
            byteTokens[b] = vocab.id(String.format("<0x%02X>", b));
        }
    }

    @Override
    void encodeText(String text, boolean afterSpecial, boolean atInputStart, IntArray out) {
        String escaped = (addSpacePrefix && afterSpecial ? " " + text : text).replace(' ', SPACE_MARK);
        int count = escaped.codePointCount(0, escaped.length());
        int[] start = new int[count];
        int[] length = new int[count];
        int[] prev = new int[count];
        int[] next = new int[count];
        int[] tokenId = new int[count];
        for (int i = 0, offset = 0; i < count; i++) {
            int charCount = Character.charCount(escaped.codePointAt(offset));
            start[i] = offset;
            length[i] = charCount;
            prev[i] = i - 1;
            next[i] = i + 1 < count ? i + 1 : -1;
            tokenId[i] = pieceIndex.find(escaped, offset, offset + charCount);
            offset += charCount;
        }

        // Queue key: higher score first, then the leftmost pair. A popped entry is only trusted if the
        // pair now at that position still forms a token with that score; an outdated entry with the
        // same key stands for an identical merge, so this matches llama.cpp's size check exactly.
        LongHeap queue = new LongHeap(count);
        for (int i = 1; i < count; i++) {
            pushPair(escaped, i - 1, i, start, length, queue);
        }
        while (!queue.isEmpty()) {
            long key = queue.pop();
            int left = (int) key;
            int right = next[left];
            if (length[left] == 0 || right < 0) {
                continue;
            }
            int merged = pieceIndex.find(escaped, start[left], start[left] + length[left] + length[right]);
            if (merged < 0 || descendingScoreKey(scores[merged]) != (int) (key >>> 32)) {
                continue;
            }
            length[left] += length[right];
            length[right] = 0;
            tokenId[left] = merged;
            next[left] = next[right];
            if (next[right] >= 0) {
                prev[next[right]] = left;
            }
            if (prev[left] >= 0) {
                pushPair(escaped, prev[left], left, start, length, queue);
            }
            if (next[left] >= 0) {
                pushPair(escaped, left, next[left], start, length, queue);
            }
        }

        boolean previousWasUnknown = false;
        for (int i = 0; i >= 0 && count > 0; i = next[i]) {
            if (tokenId[i] >= 0) {
                out.add(tokenId[i]);
                previousWasUnknown = false;
                continue;
            }
            String character = escaped.substring(start[i], start[i] + length[i]);
            if (appendByteTokens(character, out)) {
                previousWasUnknown = false;
            } else if (!previousWasUnknown) {
                if (vocab.unk < 0) {
                    throw new IllegalArgumentException("character U+" + Integer.toHexString(character.codePointAt(0)).toUpperCase()
                            + " has no token, the vocabulary has no byte tokens and no unknown token");
                }
                out.add(vocab.unk);
                previousWasUnknown = true;
            }
        }
    }

    private boolean appendByteTokens(String character, IntArray out) {
        byte[] bytes = character.getBytes(StandardCharsets.UTF_8);
        for (byte b : bytes) {
            if (byteTokens[b & 0xFF] < 0) {
                return false;
            }
        }
        for (byte b : bytes) {
            out.add(byteTokens[b & 0xFF]);
        }
        return true;
    }

    private void pushPair(String text, int left, int right, int[] start, int[] length, LongHeap queue) {
        int id = pieceIndex.find(text, start[left], start[left] + length[left] + length[right]);
        if (id >= 0) {
            queue.push(((long) descendingScoreKey(scores[id]) << 32) | left);
        }
    }

    /** An int that orders like {@code -score}, so the min-heap pops the best score first. */
    static int descendingScoreKey(float score) {
        int bits = Float.floatToIntBits(score == 0f ? 0f : score);
        int ascending = bits ^ ((bits >> 31) & 0x7FFFFFFF);
        return ~ascending;
    }
}
