package dev.kvserve.scheduler;

/**
 * Receives a submitted generation's progress. Calls come from the engine thread, one at a time and
 * in order for a given request: keep them short and never block in them (hand the work to another
 * thread, or use {@link Engine#stream}, which buffers). An exception thrown from a callback cancels
 * that request and fails its handle's future with the exception; the engine and other requests
 * carry on.
 */
public interface GenerationListener {

    /** Every event, in order; the last one has {@link TokenEvent#result()} set. */
    default void onToken(TokenEvent event) {}

    /** Once, after the last event. Cancelled generations complete too, with {@link FinishReason#CANCELLED}. */
    default void onComplete(GenerationResult result) {}

    /** Instead of {@link #onComplete} when the request failed (the model threw, or the engine closed first). */
    default void onError(Throwable error) {}
}
