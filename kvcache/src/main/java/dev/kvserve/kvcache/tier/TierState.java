package dev.kvserve.kvcache.tier;

import dev.kvserve.kvcache.Block;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.select.Selection;

/**
 * Per-sequence hooks of a {@link TierPlacement}. For {@code primary} all are no-ops. An offload tier
 * uses {@link #beforeAttention} to make the blocks the step reads ({@code selection}, or all when
 * null) resident (and to prefetch what the next layer will read), {@link #makeRoom} to move cold
 * blocks down when the pool is full, and {@link #afterStep} to enforce its resident budget.
 */
public interface TierState {

    TierState NONE = new TierState() {
        @Override
        public TierState fork() {
            return this;
        }
    };

    default void beforeAttention(LayerKv kv, Selection selection) {}

    default void afterStep(int tokens) {}

    TierState fork();

    /** The state of a fork of this sequence, which has its own tables ({@code context}). */
    default TierState fork(TierContext context) {
        return fork();
    }

    /**
     * The pool could not hand out {@code bytes}: move cold blocks of this sequence down. Returns true
     * when something was freed (the caller retries), false when nothing can move.
     */
    default boolean makeRoom(long bytes) {
        return false;
    }

    /** Brings one non-resident block back into the pool now (a hook or a write needs its bytes). */
    default void fetch(Block block) {
        throw new IllegalStateException("block is not resident and the tier cannot fetch it");
    }

    /** Moves every block of the sequence down to the lower tiers (preemption by swap). */
    default void swapOut() {
        throw new UnsupportedOperationException("tier placement keeps every block in the primary pool; swap needs an offload tier");
    }

    /** Brings every block back into the pool (resume after {@link #swapOut}). */
    default void swapIn() {
        throw new UnsupportedOperationException("tier placement keeps every block in the primary pool; swap needs an offload tier");
    }

    /**
     * Computes attention over non-resident blocks where they are stored (a computational-storage
     * tier), or null: attention then reads only resident blocks, which {@link #beforeAttention}
     * guarantees are all it selected.
     */
    default AttentionOffload attentionOffload() {
        return null;
    }

    /** The sequence closed. */
    default void close() {}
}
