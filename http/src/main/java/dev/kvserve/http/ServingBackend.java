package dev.kvserve.http;

import dev.kvserve.scheduler.EngineHealth;
import dev.kvserve.scheduler.EngineStats;
import dev.kvserve.scheduler.GenerationListener;
import dev.kvserve.scheduler.GenerationRequest;
import dev.kvserve.scheduler.QueueFullException;

/**
 * What the HTTP server needs from an inference engine, and nothing more. {@link EngineBackend}
 * implements it over the scheduler's {@code Engine}; keeping the server on this narrow surface lets
 * its transport behaviour (framing, back-pressure, cancellation) be tested on its own.
 */
public interface ServingBackend extends AutoCloseable {

    /** The one model this backend serves. */
    ModelCard model();

    /**
     * Token ids of {@code text}, with special tokens written as text (e.g. {@code <|im_start|>})
     * parsed into their ids, as chat templates require.
     *
     * @param addBos prepend the beginning-of-sequence token when the model uses one
     */
    int[] tokenize(String text, boolean addBos);

    /** The exact bytes a token stands for (logprobs report them; a token may be part of a UTF-8 character). */
    byte[] tokenBytes(int token);

    /**
     * The KV policy spec to run for a request's {@code kv_policy}: a profile's spec, or the client's
     * own spec once it passed the server's trust boundary ({@link KvPolicyGate}) and fits the model.
     *
     * @throws IllegalArgumentException saying why the request may not use it (the message names no
     *         server path: it goes to the client)
     */
    String resolveKvPolicy(String requested);

    /**
     * Starts a generation; progress goes to {@code listener} on the engine's thread. Never blocks on
     * generation.
     *
     * @throws QueueFullException when the waiting queue is at its bound
     */
    Cancellable submit(GenerationRequest request, GenerationListener listener);

    /** A consistent snapshot for /metrics. */
    EngineStats stats();

    /** Whether the engine serves now, for /health; a backend that cannot fail is always serving. */
    default EngineHealth health() {
        return new EngineHealth(EngineHealth.Status.SERVING, 0, null);
    }

    /** Stops the engine: running generations end (cancelled) and resources are released. */
    @Override
    void close();

    /** A submitted generation's off switch; safe from any thread, repeatedly, and after it finished. */
    @FunctionalInterface
    interface Cancellable {
        void cancel();
    }
}
