package dev.kvserve.scheduler;

import dev.kvserve.kvcache.SequenceKv;
import java.util.Map;

/**
 * What the scheduler needs from the KV block pool, and nothing more: admission arithmetic, opening
 * and sharing sequence caches, and making room before a step so that the model never runs out of
 * blocks half-way through one. Policies travel as spec strings so that the scheduler does not
 * depend on how a pool represents them.
 *
 * <p>Used from the engine thread only, except {@link #canonical}, {@link #bytesFor} and
 * {@link #capacityBytes}, which are pure and may be called by any thread (request validation).
 */
interface KvSpace extends AutoCloseable {

    /**
     * Checks a policy spec and returns its canonical form (equal policies, equal strings); throws
     * IllegalArgumentException naming what is wrong.
     */
    String canonical(String policy);

    /** Bytes a sequence of {@code tokens} positions holds under {@code policy}, as the pool rounds them (compressed). */
    long bytesFor(String policy, int tokens);

    /** Bytes the pool may hand out in all. */
    long capacityBytes();

    /** Bytes not held by any sequence right now. */
    long freeBytes();

    /** An empty cache under {@code policy}. */
    SequenceKv open(String policy);

    /**
     * Makes sure the next {@code tokens} positions of {@code kv} can be stored in the coming step
     * without exceeding the budget (allocating now, or promising the bytes). Returns false, holding
     * and promising nothing more, when the pool cannot.
     */
    boolean reserve(SequenceKv kv, int tokens);

    /**
     * As {@link #reserve}, but a sequence whose policy has an offload tier may first move its own
     * coldest blocks down to make the room (its steps then bring back up, layer by layer, what they
     * read). For a sequence with nobody left to preempt.
     */
    default boolean reserveSpilling(SequenceKv kv, int tokens) {
        return reserve(kv, tokens);
    }

    /** A new plan starts: promises made for the previous step have become allocations (or lapsed). */
    default void settle() {}

    /**
     * A new cache whose first {@code tokens} positions share {@code parent}'s blocks (copy-on-write),
     * or null when the pool or the parent's policy cannot share them (eviction policies, for
     * instance, no longer hold the whole prefix).
     */
    SequenceKv fork(SequenceKv parent, int tokens);

    /** Whether sequences under {@code policy} can share prefixes through {@link #fork} at all. */
    boolean canFork(String policy);

    /** Whether sequences under {@code policy} have lower tiers to be swapped to (an offload tier). */
    default boolean canSwap(String policy) {
        return false;
    }

    /**
     * Moves {@code kv}'s blocks out of the pool into its policy's lower tiers and drops what was
     * promised to it. False when they cannot take them all: the caller must then close {@code kv}.
     */
    default boolean swapOut(SequenceKv kv) {
        return false;
    }

    /** Pool bytes {@link #swapIn} of {@code kv} takes. */
    default long swapInBytes(SequenceKv kv) {
        return 0;
    }

    /**
     * Brings every block of a swapped-out {@code kv} back into the pool.
     *
     * @throws dev.kvserve.kvcache.BlockLostException when a block's lower copy is corrupt or lost: the
     *         cache is no longer whole and must be recomputed
     */
    default void swapIn(SequenceKv kv) {
        throw new UnsupportedOperationException("this pool cannot swap");
    }

    /**
     * Pool bytes that must be free to admit a new sequence of {@code tokens} positions whose first step
     * stores {@code chunk} of them, when it will run alone: the whole sequence, unless its policy spills
     * to lower tiers (then what those cannot take, and at least the first chunk).
     */
    default long admissionBytes(String policy, int tokens, int chunk) {
        return bytesFor(policy, tokens);
    }

    /** Counters for metrics. */
    Usage usage();

    /** Frees the pool. */
    @Override
    void close();

    /**
     * @param blocksUsed   blocks held by at least one sequence
     * @param blocksFree   blocks available
     * @param bytesUsed    bytes held (compressed)
     * @param bytesByTier  bytes held per storage tier (e.g. "gpu", "host", "disk")
     */
    record Usage(long blocksUsed, long blocksFree, long bytesUsed, Map<String, Long> bytesByTier) {
        public Usage {
            bytesByTier = Map.copyOf(bytesByTier);
        }
    }
}
