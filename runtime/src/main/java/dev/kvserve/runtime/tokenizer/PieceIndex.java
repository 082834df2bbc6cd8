package dev.kvserve.runtime.tokenizer;

/**
 * Token id by text, looked up from a range of a larger string without allocating a substring: the
 * SentencePiece merge loop asks this for every candidate pair of an 800 KB input.
 */
final class PieceIndex {
    private final String[] pieces;
    /** Token id + 1 per slot, 0 = empty. */
    private final int[] slots;
    private final int mask;

    PieceIndex(String[] pieces) {
        this.pieces = pieces;
        int capacity = Integer.highestOneBit(Math.max(16, pieces.length * 3)) << 1;
        slots = new int[capacity];
        mask = capacity - 1;
        for (int id = 0; id < pieces.length; id++) {
            String piece = pieces[id];
            int slot = hash(piece, 0, piece.length()) & mask;
            while (slots[slot] != 0 && !pieces[slots[slot] - 1].equals(piece)) {
                slot = (slot + 1) & mask;
            }
            // A text listed twice resolves to its last id, as the HashMap built in Vocabulary does.
            slots[slot] = id + 1;
        }
    }

    /** Id of the token spelled {@code text[start, end)}, or -1. */
    int find(String text, int start, int end) {
        int length = end - start;
        int slot = hash(text, start, end) & mask;
        while (slots[slot] != 0) {
            String piece = pieces[slots[slot] - 1];
            if (piece.length() == length && text.regionMatches(start, piece, 0, length)) {
                return slots[slot] - 1;
            }
            slot = (slot + 1) & mask;
        }
        return -1;
    }

    private static int hash(String text, int start, int end) {
        int h = 0;
        for (int i = start; i < end; i++) {
            h = 31 * h + text.charAt(i);
        }
        // Murmur3's finaliser: vocabularies are full of near-identical pieces ("tok_1234",
        // "tok_1235", ...) whose polynomial hashes differ only in low bits and would pile up
        // in long linear-probe runs (seconds of load time on a 128k vocabulary) without it.
        h ^= h >>> 16;
        h *= 0x85ebca6b;
        h ^= h >>> 13;
        h *= 0xc2b2ae35;
        return h ^ (h >>> 16);
    }
}
