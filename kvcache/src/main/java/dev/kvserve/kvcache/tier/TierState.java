package dev.kvserve.kvcache.tier;

import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.select.Selection;

/**
 * Per-sequence hooks of a {@link TierPlacement}. For {@code primary} all are no-ops. An offload tier
 * uses {@link #beforeAttention} to make sure the blocks the step reads ({@code selection}, or all when
 * null) are resident, and {@link #afterStep} to write back or spill.
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
}
