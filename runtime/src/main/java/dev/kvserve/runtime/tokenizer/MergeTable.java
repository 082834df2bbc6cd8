package dev.kvserve.runtime.tokenizer;

import java.util.Arrays;

/** BPE merges keyed by the pair of token ids: (left, right) → (rank, merged id), open addressing. */
final class MergeTable {
    private static final long EMPTY = -1L;

    private final long[] keys;
    private final long[] values;
    private final int mask;
    private int size;

    MergeTable(int expected) {
        int capacity = Integer.highestOneBit(Math.max(16, expected * 2 - 1)) << 1;
        keys = new long[capacity];
        values = new long[capacity];
        Arrays.fill(keys, EMPTY);
        mask = capacity - 1;
    }

    /** Keeps the first (best ranked) merge when a pair is listed twice, as Hugging Face does. */
    void putIfAbsent(int left, int right, int rank, int mergedId) {
        long key = pairKey(left, right);
        int slot = slot(key);
        while (keys[slot] != EMPTY) {
            if (keys[slot] == key) {
                return;
            }
            slot = (slot + 1) & mask;
        }
        if (size + 1 > keys.length / 2) {
            throw new IllegalStateException("merge table over capacity");
        }
        keys[slot] = key;
        values[slot] = ((long) rank << 32) | (mergedId & 0xFFFFFFFFL);
        size++;
    }

    /** (rank << 32 | mergedId), or -1 when the pair does not merge. */
    long get(int left, int right) {
        long key = pairKey(left, right);
        int slot = slot(key);
        while (keys[slot] != EMPTY) {
            if (keys[slot] == key) {
                return values[slot];
            }
            slot = (slot + 1) & mask;
        }
        return -1L;
    }

    int size() {
        return size;
    }

    private static long pairKey(int left, int right) {
        return ((long) left << 32) | (right & 0xFFFFFFFFL);
    }

    private int slot(long key) {
        long h = key * 0x9E3779B97F4A7C15L;
        return (int) (h >>> 32) & mask;
    }
}
