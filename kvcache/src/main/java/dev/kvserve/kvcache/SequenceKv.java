package dev.kvserve.kvcache;

/**
 * One sequence's KV cache across all layers, under the compression policy it was created with.
 * Created and accounted by the cache manager; the decoder only asks how long it is and tells it
 * when a step's tokens are complete.
 */
public interface SequenceKv extends AutoCloseable {

    /** Positions written so far: the position the next token will take. */
    int length();

    /** Called once after every layer of a step has stored its {@code tokens} new tokens. */
    void advance(int tokens);

    /** Bytes this sequence holds in the pool right now (compressed, as stored). */
    long bytesHeld();

    /** Returns every block to the pool. Idempotent. */
    @Override
    void close();
}
