package dev.kvserve.kvcache.evict;

/**
 * Attention-sink window (StreamingLLM): a query at position {@code p} sees keys at positions
 * {@code < sinks} and keys in {@code (p - w(p), p]}, nothing else, even within one prefill chunk,
 * where {@code w(p)} is the window for a sequence of {@code p + 1} tokens (a fixed count, or a
 * fraction of the sequence that grows by at most one token a step, so a key that left the window
 * never has to come back). Keys are placed at positions within the cache rather than in the text: the
 * window keeps its relative distances, and sink keys are seen at distance
 * {@code min(p, sinks + w(p) - 1) - k} instead of {@code p - k}, so no distance ever exceeds
 * {@code sinks + w(p)} (what keeps long streams inside the positions the model was trained on).
 * Attention implements this by rotating the query back by {@code max(0, p - (sinks + w(p) - 1))}
 * for sink keys.
 */
public record KeyWindow(int sinks, Budget window) {

    public KeyWindow {
        if (sinks < 0 || window == null || (!window.fraction() && window.value() < 1)) {
            throw new IllegalArgumentException("bad key window sinks=" + sinks + " window=" + window);
        }
    }

    public KeyWindow(int sinks, int window) {
        this(sinks, checkedTokens(window));
    }

    private static Budget checkedTokens(int window) {
        if (window < 1) throw new IllegalArgumentException("bad key window: window=" + window + " must be >= 1");
        return Budget.ofTokens(window);
    }

    /** Recent keys a query at {@code queryPosition} sees (at least one: itself). */
    public int windowAt(int queryPosition) {
        return Math.max(1, window.tokensFor(queryPosition + 1));
    }

    public boolean visible(int queryPosition, int keyPosition) {
        return keyPosition <= queryPosition && (keyPosition < sinks || keyPosition > queryPosition - windowAt(queryPosition));
    }

    /** Rotation offset (subtracted from the query position) for sink keys seen by this query. */
    public int sinkShift(int queryPosition) {
        return Math.max(0, queryPosition - (sinks + windowAt(queryPosition) - 1));
    }
}
