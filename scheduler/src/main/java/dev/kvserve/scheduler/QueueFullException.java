package dev.kvserve.scheduler;

/** The engine's waiting queue is at its bound; retry later (HTTP maps this to 503). */
public final class QueueFullException extends RuntimeException {

    private final int limit;

    public QueueFullException(int limit) {
        super("the waiting queue is full (" + limit + " requests waiting); retry later");
        this.limit = limit;
    }

    /** The configured bound of the waiting queue. */
    public int limit() {
        return limit;
    }
}
