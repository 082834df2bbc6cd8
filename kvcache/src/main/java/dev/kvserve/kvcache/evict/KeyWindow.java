package dev.kvserve.kvcache.evict;

/**
 * Attention-sink window (StreamingLLM): a query at position {@code p} sees keys at positions
 * {@code < sinks} and keys in {@code (p - window, p]}, nothing else, even within one prefill chunk.
 * Keys are placed at positions within the cache rather than in the text: the window keeps its
 * relative distances, and sink keys are seen at distance {@code min(p, sinks + window - 1) - k}
 * instead of {@code p - k}, so no distance ever exceeds {@code sinks + window} (what keeps long
 * streams inside the positions the model was trained on). Attention implements this by rotating the
 * query back by {@code max(0, p - (sinks + window - 1))} for sink keys.
 */
public record KeyWindow(int sinks, int window) {

    public KeyWindow {
        if (sinks < 0 || window < 1) throw new IllegalArgumentException("bad key window sinks=" + sinks + " window=" + window);
    }

    public boolean visible(int queryPosition, int keyPosition) {
        return keyPosition <= queryPosition && (keyPosition < sinks || keyPosition > queryPosition - window);
    }

    /** Rotation offset (subtracted from the query position) for sink keys seen by this query. */
    public int sinkShift(int queryPosition) {
        return Math.max(0, queryPosition - (sinks + window - 1));
    }
}
