package dev.kvserve.kernels.cpu;

import dev.kvserve.kernels.LaneSum;
import static dev.kvserve.kernels.cpu.Vec.F;
import static dev.kvserve.kernels.cpu.Vec.F32;
import static dev.kvserve.kernels.cpu.Vec.FL;
import static dev.kvserve.kernels.cpu.Vec.LE_SHORT;
import static dev.kvserve.kernels.cpu.Vec.intsToFloats;
import static dev.kvserve.kernels.cpu.Vec.loadInts;
import static dev.kvserve.kernels.cpu.Vec.loadUnsignedInts;

import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q4_0 blocks: f16 scale d, then 16 bytes of nibbles (18 bytes per 32 values). ggml puts element
 * j in the low nibble of byte j and element j+16 in the high nibble, so one load of FL bytes
 * yields two FloatVectors of contiguous elements (j.. and j+16..) without any shuffle.
 *
 * <p>The bytes are widened to 32-bit lanes first and the nibbles split there: x86 has no byte
 * shift (C2 emulates one with several instructions), but 32-bit shifts and masks are single
 * instructions.
 *
 * <p>With 16 float lanes (AVX-512), {@link #dot} decodes a nibble by table lookup instead of
 * converting it: the block's sixteen values (q − 8)·d fill one vector and {@code selectFrom}
 * (one {@code vpermd}, which also ignores the index bits above the nibble) picks each lane's value,
 * so there is no int-to-float convert, no mask and no per-block scale or offset left in the loop.
 * The loop counts pairs of blocks and derives every offset from the counter, which lets C2 hoist
 * the activation bounds checks. 1.3–1.5× the convert kernel's weights/s in a stand-alone loop.
 * Narrower vectors cannot hold the table and keep the convert kernel, which leaves the 8 out of
 * the inner loop and subtracts 8·d·Σx per block with the precomputed block sums of x.
 */
final class Q4_0Kernel extends WeightKernel {
    private static final int BLOCK_BYTES = 18;

    @Override
    boolean needsSums() {
        return FL != 16;  // only the convert kernel subtracts 8·d·Σx
    }

    /** Bit patterns of q − 8 for q = 0..15: scaled by a block's d, the block's decode table. */
    private static final FloatVector CENTRED = FL == 16
            ? FloatVector.fromArray(F, new float[] {-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7}, 0)
            : null;

    @Override
    float dot(MemorySegment w, long row, float[] x, int xo, float[] xSums, int so, int cols) {
        return FL == 16 ? dotByTable(w, row, x, xo, cols) : dotByConvert(w, row, x, xo, xSums, so, cols);
    }

    private static float dotByTable(MemorySegment w, long row, float[] x, int xo, int cols) {
        int blocks = cols / 32;
        int pairs = blocks / 2;
        FloatVector acc0 = FloatVector.zero(F), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (int i = 0; i < pairs; i++) {
            long o0 = row + 2L * BLOCK_BYTES * i;
            int x0 = xo + 64 * i;
            IntVector q0 = loadUnsignedInts(w, o0 + 2);
            IntVector q1 = loadUnsignedInts(w, o0 + BLOCK_BYTES + 2);
            IntVector t0 = CENTRED.mul(Float.float16ToFloat(w.get(LE_SHORT, o0))).reinterpretAsInts();
            IntVector t1 = CENTRED.mul(Float.float16ToFloat(w.get(LE_SHORT, o0 + BLOCK_BYTES))).reinterpretAsInts();
            acc0 = q0.selectFrom(t0).reinterpretAsFloats().fma(FloatVector.fromArray(F, x, x0), acc0);
            acc1 = q0.lanewise(VectorOperators.LSHR, 4).selectFrom(t0).reinterpretAsFloats().fma(FloatVector.fromArray(F, x, x0 + 16), acc1);
            acc2 = q1.selectFrom(t1).reinterpretAsFloats().fma(FloatVector.fromArray(F, x, x0 + 32), acc2);
            acc3 = q1.lanewise(VectorOperators.LSHR, 4).selectFrom(t1).reinterpretAsFloats().fma(FloatVector.fromArray(F, x, x0 + 48), acc3);
        }
        if (blocks % 2 != 0) {
            long o0 = row + (long) BLOCK_BYTES * (blocks - 1);
            int x0 = xo + 32 * (blocks - 1);
            IntVector q0 = loadUnsignedInts(w, o0 + 2);
            IntVector t0 = CENTRED.mul(Float.float16ToFloat(w.get(LE_SHORT, o0))).reinterpretAsInts();
            acc0 = q0.selectFrom(t0).reinterpretAsFloats().fma(FloatVector.fromArray(F, x, x0), acc0);
            acc1 = q0.lanewise(VectorOperators.LSHR, 4).selectFrom(t0).reinterpretAsFloats().fma(FloatVector.fromArray(F, x, x0 + 16), acc1);
        }
        return LaneSum.sum(acc0.add(acc1).add(acc2.add(acc3)));
    }

    private static float dotByConvert(MemorySegment w, long row, float[] x, int xo, float[] xSums, int so, int cols) {
        int blocks = cols / 32;
        FloatVector acc0 = FloatVector.zero(F);
        FloatVector acc1 = acc0;
        float offset = 0f;
        int b = 0;
        for (; b + 1 < blocks; b += 2) {
            long o0 = row + (long) BLOCK_BYTES * b;
            long o1 = o0 + BLOCK_BYTES;
            int x0 = xo + 32 * b;
            FloatVector s0 = FloatVector.zero(F);
            FloatVector s1 = s0;
            for (int j = 0; j < 16; j += FL) {
                IntVector q0 = loadInts(w, o0 + 2 + j);
                IntVector q1 = loadInts(w, o1 + 2 + j);
                s0 = intsToFloats(q0.and(15)).fma(FloatVector.fromArray(F, x, x0 + j), s0);
                s0 = intsToFloats(q0.lanewise(VectorOperators.LSHR, 4).and(15)).fma(FloatVector.fromArray(F, x, x0 + 16 + j), s0);
                s1 = intsToFloats(q1.and(15)).fma(FloatVector.fromArray(F, x, x0 + 32 + j), s1);
                s1 = intsToFloats(q1.lanewise(VectorOperators.LSHR, 4).and(15)).fma(FloatVector.fromArray(F, x, x0 + 48 + j), s1);
            }
            float d0 = Float.float16ToFloat(w.get(LE_SHORT, o0));
            float d1 = Float.float16ToFloat(w.get(LE_SHORT, o1));
            acc0 = s0.fma(FloatVector.broadcast(F, d0), acc0);
            acc1 = s1.fma(FloatVector.broadcast(F, d1), acc1);
            offset += d0 * xSums[so + b] + d1 * xSums[so + b + 1];
        }
        if (b < blocks) {
            long o0 = row + (long) BLOCK_BYTES * b;
            int x0 = xo + 32 * b;
            FloatVector s0 = FloatVector.zero(F);
            for (int j = 0; j < 16; j += FL) {
                IntVector q0 = loadInts(w, o0 + 2 + j);
                s0 = intsToFloats(q0.and(15)).fma(FloatVector.fromArray(F, x, x0 + j), s0);
                s0 = intsToFloats(q0.lanewise(VectorOperators.LSHR, 4).and(15)).fma(FloatVector.fromArray(F, x, x0 + 16 + j), s0);
            }
            float d0 = Float.float16ToFloat(w.get(LE_SHORT, o0));
            acc0 = s0.fma(FloatVector.broadcast(F, d0), acc0);
            offset += d0 * xSums[so + b];
        }
        return LaneSum.sum(acc0.add(acc1)) - 8f * offset;
    }

    @Override
    void dot4(MemorySegment w, long row, float[] x, int xo, int xs, float[] xSums, int so, int ss, int cols,
              MemorySegment out, long oi, long os) {
        int blocks = cols / 32;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int b = 0; b < blocks; b++) {
            long o = row + (long) BLOCK_BYTES * b;
            float d = Float.float16ToFloat(w.get(LE_SHORT, o));
            FloatVector scale = FloatVector.broadcast(F, d);
            FloatVector bias = FloatVector.broadcast(F, -8f * d);
            for (int j = 0; j < 16; j += FL) {
                IntVector q = loadInts(w, o + 2 + j);
                FloatVector lo = intsToFloats(q.and(15)).fma(scale, bias);
                FloatVector hi = intsToFloats(q.lanewise(VectorOperators.LSHR, 4).and(15)).fma(scale, bias);
                int xl = xo + 32 * b + j;
                int xh = xl + 16;
                a0 = lo.fma(FloatVector.fromArray(F, x, xl), a0);
                a1 = lo.fma(FloatVector.fromArray(F, x, xl + xs), a1);
                a2 = lo.fma(FloatVector.fromArray(F, x, xl + 2 * xs), a2);
                a3 = lo.fma(FloatVector.fromArray(F, x, xl + 3 * xs), a3);
                b0 = hi.fma(FloatVector.fromArray(F, x, xh), b0);
                b1 = hi.fma(FloatVector.fromArray(F, x, xh + xs), b1);
                b2 = hi.fma(FloatVector.fromArray(F, x, xh + 2 * xs), b2);
                b3 = hi.fma(FloatVector.fromArray(F, x, xh + 3 * xs), b3);
            }
        }
        out.setAtIndex(F32, oi, LaneSum.sum(a0.add(b0)));
        out.setAtIndex(F32, oi + os, LaneSum.sum(a1.add(b1)));
        out.setAtIndex(F32, oi + 2 * os, LaneSum.sum(a2.add(b2)));
        out.setAtIndex(F32, oi + 3 * os, LaneSum.sum(a3.add(b3)));
    }

    @Override
    void decodeRow(MemorySegment w, long row, float[] dst, int cols) {
        for (int b = 0; b < cols / 32; b++) {
            long o = row + (long) BLOCK_BYTES * b;
            float d = Float.float16ToFloat(w.get(LE_SHORT, o));
            FloatVector scale = FloatVector.broadcast(F, d);
            FloatVector bias = FloatVector.broadcast(F, -8f * d);
            for (int j = 0; j < 16; j += FL) {
                IntVector q = loadInts(w, o + 2 + j);
                intsToFloats(q.and(15)).fma(scale, bias).intoArray(dst, 32 * b + j);
                intsToFloats(q.lanewise(VectorOperators.LSHR, 4).and(15)).fma(scale, bias).intoArray(dst, 32 * b + 16 + j);
            }
        }
    }
}
