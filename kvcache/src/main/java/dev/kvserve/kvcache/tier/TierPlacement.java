package dev.kvserve.kvcache.tier;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.policy.PolicyComponent;

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
}
