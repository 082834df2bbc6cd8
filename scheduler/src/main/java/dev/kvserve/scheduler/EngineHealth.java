package dev.kvserve.scheduler;

/**
 * Whether an {@link Engine} can serve requests now, for health checks ({@link Engine#health()}).
 *
 * <p>A request that fails on its own (its KV policy throws, its prompt is rejected) does not change
 * the engine's health. What does: a model step that failed with no request to blame (every request
 * of that step failed), and the engine thread dying of an unexpected error, after which the engine
 * fails the requests it was running, frees their KV blocks and starts a fresh engine thread.
 *
 * @param status      what the engine is doing
 * @param restarts    how many times the engine thread died and was restarted since the engine started
 * @param lastFailure the last such failure, as "ExceptionClass: message", or null when there was none
 */
public record EngineHealth(Status status, long restarts, String lastFailure) {

    public enum Status {
        /** Accepting and running requests. */
        SERVING,
        /**
         * The engine thread died and is failing the requests it held; new requests are accepted and
         * queued, and run on the fresh thread in a moment.
         */
        RESTARTING,
        /** The engine thread died and could not be restarted: requests fail (HTTP 503). */
        FAILED,
        /** {@link Engine#close()} was called. */
        CLOSED
    }

    /** True when new requests will be served. */
    public boolean serving() {
        return status == Status.SERVING || status == Status.RESTARTING;
    }
}
