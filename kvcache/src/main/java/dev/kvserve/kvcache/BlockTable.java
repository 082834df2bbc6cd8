package dev.kvserve.kvcache;

import java.util.ArrayList;
import java.util.Arrays;

/**
 * The blocks of one layer and KV head of one sequence, in order, plus the per-slot lanes of the
 * sequence's eviction rule and selector. Slot {@code s} is slot {@code s % blockTokens} of block
 * {@code s / blockTokens}; {@link #slots()} counts every written slot (live or dead) up to the last
 * block's {@code used}. Read by attention; mutated only by {@link PagedSequence}.
 */
public final class BlockTable {

    final int blockTokens;
    final ArrayList<Block> blocks = new ArrayList<>();
    final int floatLanes;
    final int intLanes;
    float[] floats;
    int[] ints;
    int live;

    BlockTable(int blockTokens, int floatLanes, int intLanes) {
        this.blockTokens = blockTokens;
        this.floatLanes = floatLanes;
        this.intLanes = intLanes;
        this.floats = new float[floatLanes * blockTokens];
        this.ints = new int[intLanes * blockTokens];
    }

    BlockTable(BlockTable src) {
        this.blockTokens = src.blockTokens;
        this.blocks.addAll(src.blocks);
        this.floatLanes = src.floatLanes;
        this.intLanes = src.intLanes;
        this.floats = src.floats.clone();
        this.ints = src.ints.clone();
        this.live = src.live;
    }

    public int blockCount() {
        return blocks.size();
    }

    public Block block(int i) {
        return blocks.get(i);
    }

    public int blockTokens() {
        return blockTokens;
    }

    /** Written slots: (blocks - 1) * blockTokens + used of the last block. */
    public int slots() {
        int n = blocks.size();
        return n == 0 ? 0 : (n - 1) * blockTokens + blocks.get(n - 1).used;
    }

    public int liveTokens() {
        return live;
    }

    public int position(int slot) {
        return blocks.get(slot / blockTokens).positions[slot % blockTokens];
    }

    /** Bytes of this table's blocks resident in the pool (offloaded blocks do not count). */
    long bytes() {
        long b = 0;
        for (Block block : blocks) if (block.segment != null) b += block.bytes;
        return b;
    }

    /** Makes room in the lane arrays for one more block (new slots start at 0). */
    void growLanes() {
        int need = blocks.size() * blockTokens;
        if (floats.length < need * floatLanes) floats = Arrays.copyOf(floats, 2 * need * floatLanes);
        if (ints.length < need * intLanes) ints = Arrays.copyOf(ints, 2 * need * intLanes);
    }

    void clearLanes(int slot) {
        Arrays.fill(floats, slot * floatLanes, (slot + 1) * floatLanes, 0f);
        Arrays.fill(ints, slot * intLanes, (slot + 1) * intLanes, 0);
    }

    void moveLanes(int from, int to) {
        System.arraycopy(floats, from * floatLanes, floats, to * floatLanes, floatLanes);
        System.arraycopy(ints, from * intLanes, ints, to * intLanes, intLanes);
    }

    /** Removes block {@code i}, shifting the lanes of later slots down by one block. */
    Block removeBlock(int i) {
        int slotsAfter = (blocks.size() - i - 1) * blockTokens;
        System.arraycopy(floats, (i + 1) * blockTokens * floatLanes, floats, i * blockTokens * floatLanes, slotsAfter * floatLanes);
        System.arraycopy(ints, (i + 1) * blockTokens * intLanes, ints, i * blockTokens * intLanes, slotsAfter * intLanes);
        return blocks.remove(i);
    }
}
