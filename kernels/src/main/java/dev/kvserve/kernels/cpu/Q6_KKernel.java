package dev.kvserve.kernels.cpu;

import dev.kvserve.kernels.LaneSum;
import static dev.kvserve.kernels.cpu.Vec.F;
import static dev.kvserve.kernels.cpu.Vec.F32;
import static dev.kvserve.kernels.cpu.Vec.FL;
import static dev.kvserve.kernels.cpu.Vec.LE_SHORT;
import static dev.kvserve.kernels.cpu.Vec.intsToFloats;
import static dev.kvserve.kernels.cpu.Vec.loadInts;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q6_K super-blocks of 256 values (210 bytes): 128 bytes ql (low 4 bits), 64 bytes qh (high 2
 * bits), 16 int8 scales (one per run of 16), f16 d. Each half of 128 values uses 64 ql and 32 qh
 * bytes: for l < 32, ql[l] holds elements l (low nibble) and l+64 (high), ql[l+32] holds l+32 and
 * l+96, and qh[l] holds the top bits of l, l+32, l+64, l+96 in bit pairs 0, 2, 4, 6.
 * Value = d·scale·(q − 32).
 *
 * <p>Unlike the other kernels this one decodes each super-block into a 1 KB float tile (in L1)
 * and then dots the tile, instead of fusing both in one loop body. The fused body needs four
 * different bit extractions per load and grows past C2's inlining node budget
 * (NodeCountInliningCutoff); past it, Vector API calls stop being intrinsified and every vector
 * is boxed on the heap, which is slower by orders of magnitude. Two compact loops compile well.
 * The bytes are widened to 32-bit lanes before the bit fiddling (x86 has 32-bit shifts but no
 * byte shifts).
 */
final class Q6_KKernel extends WeightKernel {
    private static final int BLOCK_BYTES = 210;
    private static final ThreadLocal<float[]> TILE = ThreadLocal.withInitial(() -> new float[256]);

    @Override
    float dot(MemorySegment w, long row, float[] x, int xo, float[] xSums, int so, int cols) {
        float[] tile = TILE.get();
        FloatVector acc0 = FloatVector.zero(F), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (int sb = 0; sb < cols / 256; sb++) {
            decode(w, row + (long) BLOCK_BYTES * sb, tile, 0);
            int xb = xo + 256 * sb;
            for (int i = 0; i < 256; i += 4 * FL) {
                acc0 = FloatVector.fromArray(F, tile, i).fma(FloatVector.fromArray(F, x, xb + i), acc0);
                acc1 = FloatVector.fromArray(F, tile, i + FL).fma(FloatVector.fromArray(F, x, xb + i + FL), acc1);
                acc2 = FloatVector.fromArray(F, tile, i + 2 * FL).fma(FloatVector.fromArray(F, x, xb + i + 2 * FL), acc2);
                acc3 = FloatVector.fromArray(F, tile, i + 3 * FL).fma(FloatVector.fromArray(F, x, xb + i + 3 * FL), acc3);
            }
        }
        return LaneSum.sum(acc0.add(acc1).add(acc2.add(acc3)));
    }

    @Override
    void dot4(MemorySegment w, long row, float[] x, int xo, int xs, float[] xSums, int so, int ss, int cols,
              MemorySegment out, long oi, long os) {
        float[] tile = TILE.get();
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int sb = 0; sb < cols / 256; sb++) {
            decode(w, row + (long) BLOCK_BYTES * sb, tile, 0);
            int xb = xo + 256 * sb;
            for (int i = 0; i < 256; i += 2 * FL) {
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

    /**
     * Decodes the super-block at {@code o} into {@code tile[to..to+256)}. Quarter g (0..3) of half h
     * takes its low 4 bits from ql[64h + 32·(g&1) + l] (low nibble for g < 2, high for g ≥ 2)
     * and its top 2 bits from bits 2g..2g+1 of qh[32h + l]; each run of 16 has its own scale.
     */
    private static void decode(MemorySegment w, long o, float[] tile, int to) {
        float d = Float.float16ToFloat(w.get(LE_SHORT, o + 208));
        for (int h = 0; h < 2; h++) {
            for (int g = 0; g < 4; g++) {
                long ql = o + 64L * h + 32L * (g & 1);
                long qh = o + 128 + 32L * h;
                int nibbleShift = 4 * (g >> 1);
                int highShift = 2 * g;
                for (int l = 0; l < 32; l += FL) {
                    float scale = d * w.get(ValueLayout.JAVA_BYTE, o + 192 + 8L * h + 2 * g + l / 16);
                    IntVector low = loadInts(w, ql + l).lanewise(VectorOperators.LSHR, nibbleShift).and(15);
                    IntVector high = loadInts(w, qh + l).lanewise(VectorOperators.LSHR, highShift).and(3)
                            .lanewise(VectorOperators.LSHL, 4);
                    intsToFloats(low.or(high).sub(32)).mul(scale).intoArray(tile, to + 128 * h + 32 * g + l);
                }
            }
        }
    }

    @Override
    void decodeRow(MemorySegment w, long row, float[] dst, int cols) {
        for (int sb = 0; sb < cols / 256; sb++) decode(w, row + (long) BLOCK_BYTES * sb, dst, 256 * sb);
    }
}
