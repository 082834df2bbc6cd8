package dev.kvserve.kernels.cpu;

import dev.kvserve.kernels.LaneSum;
import static dev.kvserve.kernels.cpu.Vec.F;
import static dev.kvserve.kernels.cpu.Vec.F32;
import static dev.kvserve.kernels.cpu.Vec.FL;

import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.FloatVector;

/**
 * Kernels that decode up to 256 weights at a time (one K super-block, or eight blocks of 32) into
 * an L1-resident float tile with the Vector API and then dot the tile, as {@link Q6_KKernel}
 * does: the types with a fifth bit, a lookup table or 2- and 3-bit fields need several
 * extractions per load, and a fused decode-and-FMA body of that size passes C2's inlining node
 * budget (and then every vector is boxed). Subclasses implement {@link #decodeBlock} only.
 *
 * <p>The decoders use the oracle's operations in the oracle's order ({@code q·d + m},
 * {@code dl·q − ml}), so a decoded tile is bit-identical to {@link
 * dev.kvserve.kernels.GgmlQuantize#dequantizeRow}; only the dot's summation order differs.
 */
abstract class TiledDecodeKernel extends WeightKernel {
    private static final int TILE = 256;
    private static final ThreadLocal<float[]> TILES = ThreadLocal.withInitial(() -> new float[TILE]);

    private final int blockValues;
    private final int blockBytes;
    private final int blocksPerTile;

    TiledDecodeKernel(int blockValues, int blockBytes) {
        this.blockValues = blockValues;
        this.blockBytes = blockBytes;
        this.blocksPerTile = TILE / blockValues;
    }

    /** Decodes the block at byte {@code o} into {@code dst[to .. to + blockValues)}. */
    abstract void decodeBlock(MemorySegment w, long o, float[] dst, int to);

    /** Decodes blocks {@code b..} (at most a tile's worth) into the tile; returns how many values. */
    private int fill(MemorySegment w, long row, int b, int blocks, float[] tile) {
        int n = Math.min(blocksPerTile, blocks - b);
        for (int k = 0; k < n; k++) decodeBlock(w, row + (long) blockBytes * (b + k), tile, k * blockValues);
        return n * blockValues;
    }

    @Override
    final float dot(MemorySegment w, long row, float[] x, int xo, float[] xSums, int so, int cols) {
        float[] tile = TILES.get();
        int blocks = cols / blockValues;
        FloatVector acc0 = FloatVector.zero(F), acc1 = acc0;
        for (int b = 0; b < blocks; b += blocksPerTile) {
            int len = fill(w, row, b, blocks, tile);
            int xb = xo + b * blockValues;
            // len is a multiple of 32, so of 2·FL (FL ≤ 16)
            for (int i = 0; i < len; i += 2 * FL) {
                acc0 = FloatVector.fromArray(F, tile, i).fma(FloatVector.fromArray(F, x, xb + i), acc0);
                acc1 = FloatVector.fromArray(F, tile, i + FL).fma(FloatVector.fromArray(F, x, xb + i + FL), acc1);
            }
        }
        return LaneSum.sum(acc0.add(acc1));
    }

    @Override
    final void dot4(MemorySegment w, long row, float[] x, int xo, int xs, float[] xSums, int so, int ss, int cols,
                    MemorySegment out, long oi, long os) {
        float[] tile = TILES.get();
        int blocks = cols / blockValues;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int b = 0; b < blocks; b += blocksPerTile) {
            int len = fill(w, row, b, blocks, tile);
            int xb = xo + b * blockValues;
            for (int i = 0; i < len; i += 2 * FL) {
                FloatVector w0 = FloatVector.fromArray(F, tile, i);
                FloatVector w1 = FloatVector.fromArray(F, tile, i + FL);
                int x0 = xb + i;
                a0 = w0.fma(FloatVector.fromArray(F, x, x0), a0);
                a1 = w0.fma(FloatVector.fromArray(F, x, x0 + xs), a1);
                a2 = w0.fma(FloatVector.fromArray(F, x, x0 + 2 * xs), a2);
                a3 = w0.fma(FloatVector.fromArray(F, x, x0 + 3 * xs), a3);
                b0 = w1.fma(FloatVector.fromArray(F, x, x0 + FL), b0);
                b1 = w1.fma(FloatVector.fromArray(F, x, x0 + FL + xs), b1);
                b2 = w1.fma(FloatVector.fromArray(F, x, x0 + FL + 2 * xs), b2);
                b3 = w1.fma(FloatVector.fromArray(F, x, x0 + FL + 3 * xs), b3);
            }
        }
        out.setAtIndex(F32, oi, LaneSum.sum(a0.add(b0)));
        out.setAtIndex(F32, oi + os, LaneSum.sum(a1.add(b1)));
        out.setAtIndex(F32, oi + 2 * os, LaneSum.sum(a2.add(b2)));
        out.setAtIndex(F32, oi + 3 * os, LaneSum.sum(a3.add(b3)));
    }

    @Override
    final void decodeRow(MemorySegment w, long row, float[] dst, int cols) {
        for (int b = 0; b < cols / blockValues; b++) decodeBlock(w, row + (long) blockBytes * b, dst, b * blockValues);
    }
}
