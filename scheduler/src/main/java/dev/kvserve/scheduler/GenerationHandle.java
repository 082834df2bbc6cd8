package dev.kvserve.scheduler;

import java.util.concurrent.CompletableFuture;

/**
 * A submitted generation: its result to come and a way to cancel it. Thread-safe.
 */
public final class GenerationHandle {

    private final long id;
    private final CompletableFuture<GenerationResult> result;
    private final Runnable canceller;

    GenerationHandle(long id, CompletableFuture<GenerationResult> result, Runnable canceller) {
        this.id = id;
        this.result = result;
        this.canceller = canceller;
    }

    /** Engine-unique request number, in submission order. */
    public long id() {
        return id;
    }

    /**
     * Completes with the result, with {@link FinishReason#CANCELLED} and the partial text after
     * {@link #cancel()}, or exceptionally when the request failed or the engine closed first.
     * Cancelling this future does not stop the generation: call {@link #cancel()}.
     */
    public CompletableFuture<GenerationResult> result() {
        return result;
    }

    /**
     * Stops generating (the client went away): the sequence's KV blocks are freed before the
     * engine's next step. No effect once finished; safe to call repeatedly from any thread.
     */
    public void cancel() {
        if (!result.isDone()) canceller.run();
    }

    public boolean isDone() {
        return result.isDone();
    }
}
