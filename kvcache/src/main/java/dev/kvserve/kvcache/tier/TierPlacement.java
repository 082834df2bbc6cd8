package dev.kvserve.kvcache.tier;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.policy.PolicyComponent;
import java.util.function.Supplier;

/**
 * Where a sequence's blocks live: {@code primary} (every block in the pool's memory) or
 * {@code offload} (host RAM, SSD files, an emulated computational-storage device; see
 * {@link OffloadTier}).
 */
public interface TierPlacement extends PolicyComponent {

    /** Name of the tier blocks are written to and read from by attention. */
    String primaryTier();

    /** Per-sequence state receiving block events. */
    TierState open(KvGeometry geometry, int blockTokens);

    /** Per-sequence state with access to the sequence's blocks (offload tiers need it). */
    default TierState open(TierContext context) {
        return open(context.geometry(), context.blockTokens());
    }

    /** A cache manager's shared resources by key, created on first use (see {@link TierContext#shared}). */
    @FunctionalInterface
    interface Resources {
        AutoCloseable shared(String key, Supplier<? extends AutoCloseable> create);
    }

    /**
     * Creates now whatever this placement shares between sequences (an offload tier's store), so
     * that a policy whose resources cannot be had is refused when it is checked, not in a step.
     */
    default void prepare(Resources resources) {}
}
