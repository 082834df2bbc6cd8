package dev.kvserve.kernels.cpu;

import dev.kvserve.kernels.LaneSum;
import static dev.kvserve.kernels.cpu.Vec.F;
import static dev.kvserve.kernels.cpu.Vec.F32;
import static dev.kvserve.kernels.cpu.Vec.FL;
import static dev.kvserve.kernels.cpu.Vec.LE;
import static dev.kvserve.kernels.cpu.Vec.LE_SHORT;
import static dev.kvserve.kernels.cpu.Vec.intsToFloats;
import static dev.kvserve.kernels.cpu.Vec.loadInts;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q4_K super-blocks of 256 values (144 bytes): f16 d, f16 dmin, 12 bytes of packed 6-bit
 * (scale, min) pairs for 8 sub-blocks of 32, then 128 bytes of nibbles. Bytes 32c..32c+31 carry
 * sub-block 2c in their low nibbles and sub-block 2c+1 in their high nibbles, so as in Q4_0 one
 * byte load feeds two contiguous runs of elements (split after widening to 32-bit lanes, where
 * shifts are single instructions). Value = d·scale·q − dmin·min.
 *
 * <p>{@link #dot} factors the sub-block constants out: Σ (d·sc·q − dmin·m)·x =
 * d·sc·Σ q·x − dmin·m·Σ x, with Σ x per run of 32 precomputed once per activation row
 * ({@code xSums}), so the inner loop is a plain widen-and-FMA. {@link #dot4} decodes each vector
 * with one FMA (q·(d·sc) − dmin·m) and reuses it for the four rows.
 */
final class Q4_KKernel extends WeightKernel {
    private static final int BLOCK_BYTES = 144;
    private static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(LE);
    private static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(LE);

    @Override
    boolean needsSums() {
        return true;
    }

    /** 6-bit scale of sub-block j, from the 12 scale bytes held as lo (bytes 0-7) and hi (8-11). */
    private static int scale(long lo, int hi, int j) {
        // j < 4: low 6 bits of byte j. j >= 4: low nibble of byte j+4 (in hi) and the top two
        // bits of byte j-4. Both forms are computed and one picked, which compiles branch-free.
        int k = j & 3;
        int direct = (int) (lo >>> (8 * k)) & 63;
        int split = ((hi >>> (8 * k)) & 0xF) | (((int) (lo >>> (8 * k + 6)) & 3) << 4);
        return j < 4 ? direct : split;
    }

    /** 6-bit min of sub-block j (see {@link dev.kvserve.kernels.GgmlQuantize#scaleMinK4}). */
    private static int min(long lo, int hi, int j) {
        // j < 4: low 6 bits of byte j+4. j >= 4: high nibble of byte j+4 (in hi) and the top two
        // bits of byte j.
        int k = j & 3;
        int direct = (int) (lo >>> (8 * k + 32)) & 63;
        int split = ((hi >>> (8 * k + 4)) & 0xF) | (((int) (lo >>> (8 * k + 38)) & 3) << 4);
        return j < 4 ? direct : split;
    }

    @Override
    float dot(MemorySegment w, long row, float[] x, int xo, float[] xSums, int so, int cols) {
        int superBlocks = cols / 256;
        FloatVector acc0 = FloatVector.zero(F);
        FloatVector acc1 = acc0;
        float minTerm = 0f;
        for (int sb = 0; sb < superBlocks; sb++) {
            long o = row + (long) BLOCK_BYTES * sb;
            float d = Float.float16ToFloat(w.get(LE_SHORT, o));
            float dmin = Float.float16ToFloat(w.get(LE_SHORT, o + 2));
            long lo = w.get(LE_LONG, o + 4);
            int hi = w.get(LE_INT, o + 12);
            float mins = 0f;
            for (int c = 0; c < 4; c++) {
                long q = o + 16 + 32L * c;
                int xb = xo + 256 * sb + 64 * c;
                FloatVector s0 = FloatVector.zero(F);
                FloatVector s1 = s0;
                for (int j = 0; j < 32; j += FL) {
                    IntVector bytes = loadInts(w, q + j);
                    s0 = intsToFloats(bytes.and(15)).fma(FloatVector.fromArray(F, x, xb + j), s0);
                    s1 = intsToFloats(bytes.lanewise(VectorOperators.LSHR, 4).and(15)).fma(FloatVector.fromArray(F, x, xb + 32 + j), s1);
                }
                acc0 = s0.fma(FloatVector.broadcast(F, d * scale(lo, hi, 2 * c)), acc0);
                acc1 = s1.fma(FloatVector.broadcast(F, d * scale(lo, hi, 2 * c + 1)), acc1);
                int sub = so + 8 * sb + 2 * c;
                mins += min(lo, hi, 2 * c) * xSums[sub] + min(lo, hi, 2 * c + 1) * xSums[sub + 1];
            }
            minTerm += dmin * mins;
        }
        return LaneSum.sum(acc0.add(acc1)) - minTerm;
    }

    @Override
    void dot4(MemorySegment w, long row, float[] x, int xo, int xs, float[] xSums, int so, int ss, int cols,
              MemorySegment out, long oi, long os) {
        int superBlocks = cols / 256;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int sb = 0; sb < superBlocks; sb++) {
            long o = row + (long) BLOCK_BYTES * sb;
            float d = Float.float16ToFloat(w.get(LE_SHORT, o));
            float dmin = Float.float16ToFloat(w.get(LE_SHORT, o + 2));
            long lo = w.get(LE_LONG, o + 4);
            int hi = w.get(LE_INT, o + 12);
            for (int c = 0; c < 4; c++) {
                FloatVector scaleLo = FloatVector.broadcast(F, d * scale(lo, hi, 2 * c));
                FloatVector minLo = FloatVector.broadcast(F, -dmin * min(lo, hi, 2 * c));
                FloatVector scaleHi = FloatVector.broadcast(F, d * scale(lo, hi, 2 * c + 1));
                FloatVector minHi = FloatVector.broadcast(F, -dmin * min(lo, hi, 2 * c + 1));
                long q = o + 16 + 32L * c;
                for (int j = 0; j < 32; j += FL) {
                    IntVector bytes = loadInts(w, q + j);
                    FloatVector wl = intsToFloats(bytes.and(15)).fma(scaleLo, minLo);
                    FloatVector wh = intsToFloats(bytes.lanewise(VectorOperators.LSHR, 4).and(15)).fma(scaleHi, minHi);
                    int xl = xo + 256 * sb + 64 * c + j;
                    int xh = xl + 32;
                    a0 = wl.fma(FloatVector.fromArray(F, x, xl), a0);
                    a1 = wl.fma(FloatVector.fromArray(F, x, xl + xs), a1);
                    a2 = wl.fma(FloatVector.fromArray(F, x, xl + 2 * xs), a2);
                    a3 = wl.fma(FloatVector.fromArray(F, x, xl + 3 * xs), a3);
                    b0 = wh.fma(FloatVector.fromArray(F, x, xh), b0);
                    b1 = wh.fma(FloatVector.fromArray(F, x, xh + xs), b1);
                    b2 = wh.fma(FloatVector.fromArray(F, x, xh + 2 * xs), b2);
                    b3 = wh.fma(FloatVector.fromArray(F, x, xh + 3 * xs), b3);
                }
            }
        }
        out.setAtIndex(F32, oi, LaneSum.sum(a0.add(b0)));
        out.setAtIndex(F32, oi + os, LaneSum.sum(a1.add(b1)));
        out.setAtIndex(F32, oi + 2 * os, LaneSum.sum(a2.add(b2)));
        out.setAtIndex(F32, oi + 3 * os, LaneSum.sum(a3.add(b3)));
    }

    @Override
    void decodeRow(MemorySegment w, long row, float[] dst, int cols) {
        for (int sb = 0; sb < cols / 256; sb++) {
            long o = row + (long) BLOCK_BYTES * sb;
            float d = Float.float16ToFloat(w.get(LE_SHORT, o));
            float dmin = Float.float16ToFloat(w.get(LE_SHORT, o + 2));
            long lo = w.get(LE_LONG, o + 4);
            int hi = w.get(LE_INT, o + 12);
            for (int c = 0; c < 4; c++) {
                FloatVector scaleLo = FloatVector.broadcast(F, d * scale(lo, hi, 2 * c));
                FloatVector minLo = FloatVector.broadcast(F, -dmin * min(lo, hi, 2 * c));
                FloatVector scaleHi = FloatVector.broadcast(F, d * scale(lo, hi, 2 * c + 1));
                FloatVector minHi = FloatVector.broadcast(F, -dmin * min(lo, hi, 2 * c + 1));
                int base = 256 * sb + 64 * c;
                for (int j = 0; j < 32; j += FL) {
                    IntVector bytes = loadInts(w, o + 16 + 32L * c + j);
                    intsToFloats(bytes.and(15)).fma(scaleLo, minLo).intoArray(dst, base + j);
                    intsToFloats(bytes.lanewise(VectorOperators.LSHR, 4).and(15)).fma(scaleHi, minHi).intoArray(dst, base + 32 + j);
                }
            }
        }
    }
}
