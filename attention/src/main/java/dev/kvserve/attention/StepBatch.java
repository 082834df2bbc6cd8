package dev.kvserve.attention;

import dev.kvserve.kvcache.SequenceKv;
import java.util.List;

/** Which rows of a batched step belong to which sequence (see {@link KvAttention}). */
public record StepBatch(List<Entry> entries) {

    /** Sequence {@code cache} owns rows firstRow..firstRow+tokens-1, at positions startPos onwards. */
    public record Entry(SequenceKv cache, int firstRow, int tokens, int startPos) {}

    public StepBatch {
        entries = List.copyOf(entries);
    }

    public int size() {
        return entries.size();
    }

    public Entry get(int i) {
        return entries.get(i);
    }

    /** Total rows (tokens) of the step. */
    public int rows() {
        int n = 0;
        for (Entry e : entries) n += e.tokens();
        return n;
    }
}
