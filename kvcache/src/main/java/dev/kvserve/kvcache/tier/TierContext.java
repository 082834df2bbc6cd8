package dev.kvserve.kvcache.tier;

import dev.kvserve.kvcache.Block;
import dev.kvserve.kvcache.BlockTable;
import dev.kvserve.kvcache.KvGeometry;
import java.lang.foreign.MemorySegment;
import java.util.function.Supplier;

/**
 * What a sequence lends its tier state: its block tables and the pool operations that move a block's
 * bytes between the primary pool and a lower tier. Called on the sequence's step thread only.
 */
public interface TierContext {

    KvGeometry geometry();

    int blockTokens();

    BlockTable table(int layer, int kvHead);

    /**
     * Records {@code copy} as the block's lower-tier copy and returns its pool memory. The block
     * must be resident and {@code copy} must hold its current bytes.
     */
    void detach(Block block, StoredBlock copy);

    /** Records a lower-tier copy of a resident block without freeing its memory (write-through). */
    void keepCopy(Block block, StoredBlock copy);

    /**
     * Gives a non-resident block pool memory again and returns it for the caller to fill from the
     * block's {@link Block#stored()} copy (which stays valid until the block is written).
     *
     * @throws dev.kvserve.kvcache.KvBudgetExceededException when the pool has no room
     */
    MemorySegment attach(Block block);

    /** Sets the block's LRU clock (the tier's step counter when it was last read). */
    void touch(Block block, long clock);

    /** Bytes the pool can still hand out. */
    long poolBytesFree();

    /**
     * A resource shared by every sequence of the cache manager under the same key (the lower-tier
     * stores: host and SSD budgets are global), created on first use and closed with the manager.
     */
    <T extends AutoCloseable> T shared(String key, Supplier<T> create);
}
