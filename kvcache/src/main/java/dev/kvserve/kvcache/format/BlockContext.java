package dev.kvserve.kvcache.format;

import dev.kvserve.kvcache.RopeTable;

/**
 * What a codec call may need besides the block bytes: which layer and head, the positions of the
 * block's slots, RoPE, the sequence's {@link FormatState}, and scratch space. One instance per thread,
 * reset by the cache or kernel before each block; codecs must not keep references to it.
 */
public final class BlockContext {

    private final int headDim;
    private final RopeTable rope;
    private int layer;
    private int kvHead;
    private int[] positions;
    private FormatState formatState = FormatState.NONE;
    private float[] scratch = new float[0];
    private float[] scratch2 = new float[0];

    public BlockContext(int headDim, RopeTable rope) {
        this.headDim = headDim;
        this.rope = rope;
    }

    /** Points this context at a block; returns this. */
    public BlockContext set(int layer, int kvHead, int[] positions, FormatState formatState) {
        this.layer = layer;
        this.kvHead = kvHead;
        this.positions = positions;
        this.formatState = formatState;
        return this;
    }

    public int headDim() {
        return headDim;
    }

    public int layer() {
        return layer;
    }

    public int kvHead() {
        return kvHead;
    }

    /** Position of each slot of the block; -1 for a dead or never written slot. Do not modify. */
    public int[] positions() {
        return positions;
    }

    public RopeTable rope() {
        return rope;
    }

    public FormatState formatState() {
        return formatState;
    }

    /** A float array of at least {@code n} elements, reused between calls (contents undefined). */
    public float[] scratch(int n) {
        if (scratch.length < n) scratch = new float[n];
        return scratch;
    }

    /** A second scratch array independent of {@link #scratch}. */
    public float[] scratch2(int n) {
        if (scratch2.length < n) scratch2 = new float[n];
        return scratch2;
    }
}
