package dev.kvserve.kvcache;

import java.util.Map;

/**
 * A snapshot of the pool's counters (for tests and the server's /metrics).
 *
 * @param budgetBytes   the byte budget the pool was created with
 * @param bytesUsed     bytes of live blocks and side memory, as stored (what the budget limits)
 * @param bytesReserved off-heap bytes actually reserved (slabs; at least bytesUsed)
 * @param blocksUsed    live blocks (a block shared by forked sequences counts once)
 * @param blocksFree    carved but unused block slots ready for reuse
 * @param sideBytes     part of bytesUsed held as side memory outside blocks
 * @param sequences     open sequences
 * @param bytesByTier   bytesUsed split by tier name
 */
public record KvPoolStats(long budgetBytes, long bytesUsed, long bytesReserved, long blocksUsed, long blocksFree,
                          long sideBytes, int sequences, Map<String, Long> bytesByTier) {

    public long bytesFree() {
        return budgetBytes - bytesUsed;
    }
}
