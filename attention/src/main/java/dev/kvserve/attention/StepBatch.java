package dev.kvserve.attention;

import dev.kvserve.kvcache.SequenceKv;
import java.util.List;

/**
 * Which rows of a batched step belong to which sequence (see {@link KvAttention}), and which
 * sequences have failed during the step.
 *
 * <p>An {@link #isolating} batch contains faults per sequence: when storing, a policy hook or the
 * attention of one sequence throws a {@code RuntimeException}, the implementation records it with
 * {@link #fail}, writes zeros to that sequence's output rows and skips it in the step's later layers,
 * while the other sequences go on (every other operation of a decoder step is row-independent, so
 * their outputs are those of a step without the failed one). The failed sequence's cache is half
 * written: the caller must not advance it and should close it. A plain batch lets the first fault
 * propagate out of {@code attend}, failing the whole step. Errors always propagate.
 *
 * <p>Not thread-safe: faults are recorded on the thread that calls {@code attend}.
 */
public final class StepBatch {

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

    private final List<Entry> entries;
    private final boolean isolating;
    private final RuntimeException[] faults;

    /** A batch whose first fault fails the whole step (propagates out of {@code attend}). */
    public StepBatch(List<Entry> entries) {
        this(entries, false);
    }

    private StepBatch(List<Entry> entries, boolean isolating) {
        this.entries = List.copyOf(entries);
        this.isolating = isolating;
        this.faults = new RuntimeException[this.entries.size()];
    }

    /** A batch that contains a sequence's fault to that sequence (see the class comment). */
    public static StepBatch isolating(List<Entry> entries) {
        return new StepBatch(entries, true);
    }

    public List<Entry> entries() {
        return entries;
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

    public boolean isIsolating() {
        return isolating;
    }

    /**
     * Records that sequence {@code i} failed in this step (the first fault is kept). In a plain
     * batch it throws {@code fault} at once: the whole step fails, as it always did.
     */
    public void fail(int i, RuntimeException fault) {
        if (!isolating) throw fault;
        if (faults[i] == null) faults[i] = fault;
    }

    /** Why sequence {@code i} failed in this step, or null while it has not. */
    public RuntimeException fault(int i) {
        return faults[i];
    }

    public boolean failed(int i) {
        return faults[i] != null;
    }
}
