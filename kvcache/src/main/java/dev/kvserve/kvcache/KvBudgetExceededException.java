package dev.kvserve.kvcache;

/**
 * The pool cannot hand out the bytes asked for without exceeding its budget. The scheduler avoids it
 * with {@link KvCacheManager#canAdmit}; when it happens mid-step the step's sequence should be
 * preempted (closed and recomputed later).
 */
public class KvBudgetExceededException extends RuntimeException {

    private final long requested;
    private final long available;

    public KvBudgetExceededException(long requested, long available, long budget) {
        super("KV cache budget exceeded: need " + requested + " bytes, " + available + " of " + budget + " free");
        this.requested = requested;
        this.available = available;
    }

    protected KvBudgetExceededException(String message, long requested, long available) {
        super(message);
        this.requested = requested;
        this.available = available;
    }

    public long requested() {
        return requested;
    }

    public long available() {
        return available;
    }
}
