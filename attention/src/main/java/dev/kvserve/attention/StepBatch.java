package dev.kvserve.attention;

import dev.kvserve.kvcache.SequenceKv;
import java.util.List;

/** Which rows of a batched step belong to which sequence (see {@link KvAttention}). */
public record StepBatch(List<Entry> entries) {

    /**
     * Sequence {@code cache} owns rows firstRow..firstRow+tokens-1, at positions startPos onwards
     * ({@code startPos} must equal {@code cache.length()}). {@code endsPrompt} is true on the step
     * whose tokens complete the prompt (the last prefill chunk): eviction rules and selectors that act
     * once after prefill (SnapKV, L2, D2O budgets, ClusterKV clustering) run then. If no step was
     * marked, the cache treats the first single-token step after a longer one as the end of the prompt.
     */
    public record Entry(SequenceKv cache, int firstRow, int tokens, int startPos, boolean endsPrompt) {

        public Entry(SequenceKv cache, int firstRow, int tokens, int startPos) {
            this(cache, firstRow, tokens, startPos, false);
        }

        public Entry {
            if (cache == null) throw new IllegalArgumentException("step entry without a cache");
            if (firstRow < 0 || tokens <= 0 || startPos < 0) {
                throw new IllegalArgumentException("bad step entry: firstRow=" + firstRow + " tokens=" + tokens + " startPos=" + startPos);
            }
        }
    }

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
