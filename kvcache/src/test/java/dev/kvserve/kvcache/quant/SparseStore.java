package dev.kvserve.kvcache.quant;

import java.util.ArrayList;
import java.util.List;

/**
 * KVQuant's sparse outlier side store: per token a 32-bit start pointer (and, as the paged format
 * stores it, a 16-bit count), per outlier a 16-bit channel index and a binary16 value (compressed-sparse rows keyed by token, append-only, in fixed blocks as
 * the paper's pitfall list recommends instead of re-copying the array on every token).
 */
final class SparseStore {

    private static final int ENTRIES_PER_BLOCK = 4096;
    private static final int TOKENS_PER_BLOCK = 1024;
    private final List<short[]> index = new ArrayList<>();
    private final List<short[]> value = new ArrayList<>();
    private final List<int[]> starts = new ArrayList<>();
    private int tokens;
    private int entries;

    /** Appends one token's outliers (channels ascending). */
    void addToken(short[] channels, short[] halfValues, int count) {
        if (tokens % TOKENS_PER_BLOCK == 0) starts.add(new int[TOKENS_PER_BLOCK + 1]);
        starts.get(tokens / TOKENS_PER_BLOCK)[tokens % TOKENS_PER_BLOCK] = entries;
        for (int i = 0; i < count; i++) {
            if (entries % ENTRIES_PER_BLOCK == 0) {
                index.add(new short[ENTRIES_PER_BLOCK]);
                value.add(new short[ENTRIES_PER_BLOCK]);
            }
            index.get(entries / ENTRIES_PER_BLOCK)[entries % ENTRIES_PER_BLOCK] = channels[i];
            value.get(entries / ENTRIES_PER_BLOCK)[entries % ENTRIES_PER_BLOCK] = halfValues[i];
            entries++;
        }
        tokens++;
    }

    int start(int token) {
        return starts.get(token / TOKENS_PER_BLOCK)[token % TOKENS_PER_BLOCK];
    }

    int end(int token) {
        return token + 1 < tokens ? start(token + 1) : entries;
    }

    int channel(int entry) {
        return index.get(entry / ENTRIES_PER_BLOCK)[entry % ENTRIES_PER_BLOCK] & 0xFFFF;
    }

    float value(int entry) {
        return Half.value(value.get(entry / ENTRIES_PER_BLOCK)[entry % ENTRIES_PER_BLOCK]);
    }

    int tokens() {
        return tokens;
    }

    int entries() {
        return entries;
    }

    /** 4-byte pointer and 2-byte count per token, 2+2 bytes per outlier. */
    long bytes() {
        return 6L * tokens + 4L * entries;
    }

    void clear() {
        index.clear();
        value.clear();
        starts.clear();
        tokens = 0;
        entries = 0;
    }
}
