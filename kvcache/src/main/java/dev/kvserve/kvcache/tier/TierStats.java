package dev.kvserve.kvcache.tier;

/**
 * Counters of the lower tiers (a snapshot; sums over stores via {@link #plus}).
 *
 * @param hostBytes        block bytes held in host RAM now (including SSD writes still in flight)
 * @param ssdBytes         block bytes held in SSD files now
 * @param ssdFileBytes     size of the SSD files now (aligned extents, free ones included)
 * @param blocksDown       blocks moved out of the primary pool
 * @param bytesDown        their bytes
 * @param blocksUp         blocks brought back into the primary pool
 * @param bytesUp          their bytes
 * @param ssdBytesWritten  bytes written to SSD files (aligned)
 * @param ssdBytesRead     bytes read from SSD files by the runtime (aligned; CSD reads excluded)
 * @param prefetchIssued   SSD blocks whose read was started ahead of use
 * @param prefetchHits     SSD blocks found already read when needed
 * @param prefetchLate     SSD blocks prefetched but still in flight when needed (the step waited)
 * @param demandReads      SSD blocks read only when needed (prefetch misses)
 * @param stallNanos       time steps spent waiting for SSD reads
 * @param lostBlocks       blocks whose SSD copy failed its checksum or was truncated
 * @param csdRequests      partial-attention requests served by the computational-storage worker
 * @param csdBlocks        blocks it attended over
 * @param csdBytesInternal bytes it read from its SSD files (device-internal traffic)
 * @param csdBytesLink     bytes crossing the emulated host link for it (queries in, partials out)
 */
public record TierStats(long hostBytes, long ssdBytes, long ssdFileBytes, long blocksDown, long bytesDown, long blocksUp,
                        long bytesUp, long ssdBytesWritten, long ssdBytesRead, long prefetchIssued, long prefetchHits,
                        long prefetchLate, long demandReads, long stallNanos, long lostBlocks, long csdRequests,
                        long csdBlocks, long csdBytesInternal, long csdBytesLink) {

    public static final TierStats ZERO = new TierStats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);

    /** SSD blocks that were ready when needed, over all SSD blocks needed (NaN when none were). */
    public double prefetchHitRate() {
        long needed = prefetchHits + prefetchLate + demandReads;
        return needed == 0 ? Double.NaN : (double) prefetchHits / needed;
    }

    public TierStats plus(TierStats o) {
        return new TierStats(hostBytes + o.hostBytes, ssdBytes + o.ssdBytes, ssdFileBytes + o.ssdFileBytes,
                blocksDown + o.blocksDown, bytesDown + o.bytesDown, blocksUp + o.blocksUp, bytesUp + o.bytesUp,
                ssdBytesWritten + o.ssdBytesWritten, ssdBytesRead + o.ssdBytesRead, prefetchIssued + o.prefetchIssued,
                prefetchHits + o.prefetchHits, prefetchLate + o.prefetchLate, demandReads + o.demandReads,
                stallNanos + o.stallNanos, lostBlocks + o.lostBlocks, csdRequests + o.csdRequests,
                csdBlocks + o.csdBlocks, csdBytesInternal + o.csdBytesInternal, csdBytesLink + o.csdBytesLink);
    }
}
