package dev.kvserve.kvcache;

import dev.kvserve.kvcache.format.BlockCodec;
import dev.kvserve.kvcache.tier.StoredBlock;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * One block of pool memory: {@code blockTokens} slots of one layer and KV head, encoded by
 * {@link #codec()}, plus the position of each slot (-1 = dead or not yet written). Blocks are
 * reference counted: sequences forked from one another share blocks until one of them writes
 * (copy-on-write). Attention reads blocks; only the cache mutates them.
 */
public final class Block {

    // null while the block's bytes live in a lower tier (see tier.TierState)
    BlockPool.Slab slab;
    int index;
    MemorySegment segment;
    /** Copy of the bytes in a lower tier (host RAM, SSD), or null; valid while the block is unchanged. */
    StoredBlock stored;
    /** Tier clock of the last step that read or wrote this block (LRU demotion). */
    long lastUse;
    final long bytes;
    final String tier;
    BlockCodec codec;
    final int[] positions;
    int used;
    int live;
    int refCount = 1;
    /** True while appends may go into this block: created by appendCodec and not sealed. */
    boolean appendable;

    Block(BlockPool.Slab slab, int index, MemorySegment segment, BlockCodec codec, int blockTokens, String tier) {
        this.slab = slab;
        this.index = index;
        this.segment = segment;
        this.bytes = codec.blockBytes();
        this.codec = codec;
        this.tier = tier;
        this.positions = new int[blockTokens];
        Arrays.fill(positions, -1);
    }

    /** The block's bytes in pool memory; only while {@link #resident()}. */
    public MemorySegment segment() {
        if (segment == null) throw new IllegalStateException("block is not resident in the primary pool (offloaded to a lower tier)");
        return segment;
    }

    /** True while the block's bytes are in the primary pool (attention may read them). */
    public boolean resident() {
        return segment != null;
    }

    /** The lower-tier copy, or null. */
    public StoredBlock stored() {
        return stored;
    }

    public long lastUse() {
        return lastUse;
    }

    /** Reference count (a block shared by forks has more than one). */
    public int refCount() {
        return refCount;
    }

    /** True while appends may still go into this block. */
    public boolean appendable() {
        return appendable;
    }

    public BlockCodec codec() {
        return codec;
    }

    /** Position per slot, -1 when dead or unwritten. Do not modify. */
    public int[] positions() {
        return positions;
    }

    /** Slots written so far (live or since evicted). */
    public int used() {
        return used;
    }

    /** Slots holding a token. */
    public int live() {
        return live;
    }

    /** Bytes of this block as stored (what the pool budget counts). */
    public long bytes() {
        return bytes;
    }

    public String tier() {
        return tier;
    }

    int maxPosition() {
        int m = -1;
        for (int i = 0; i < used; i++) m = Math.max(m, positions[i]);
        return m;
    }
}
