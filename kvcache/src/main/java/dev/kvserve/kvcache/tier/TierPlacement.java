package dev.kvserve.kvcache.tier;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.policy.PolicyComponent;

/**
 * Where a sequence's blocks live. Today only {@code primary} exists: every block in the pool's
 * memory. Offload tiers (host RAM, SSD; methods.md §9.6) will implement this: write-through of
 * sealed or full blocks to a lower tier, dropping them from the primary one under pressure, and
 * fetching (or prefetching) them before attention reads them.
 */
public interface TierPlacement extends PolicyComponent {

    /** Name of the tier blocks are written to and read from by attention. */
    String primaryTier();

    /** Per-sequence state receiving block events. */
    TierState open(KvGeometry geometry, int blockTokens);
}
