package dev.kvserve.kvcache;

import dev.kvserve.kvcache.format.BlockCodec;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * One block of pool memory: {@code blockTokens} slots of one layer and KV head, encoded by
 * {@link #codec()}, plus the position of each slot (-1 = dead or not yet written). Blocks are
 * reference counted: sequences forked from one another share blocks until one of them writes
 * (copy-on-write). Attention reads blocks; only the cache mutates them.
 */
public final class Block {

    final BlockPool.Slab slab;
    final int index;
    final MemorySegment segment;
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

    public MemorySegment segment() {
        return segment;
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
