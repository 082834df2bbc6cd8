package dev.kvserve.kernels.cpu;

import static dev.kvserve.kernels.cpu.Vec.B;
import static dev.kvserve.kernels.cpu.Vec.F;
import static dev.kvserve.kernels.cpu.Vec.F32;
import static dev.kvserve.kernels.cpu.Vec.FL;
import static dev.kvserve.kernels.cpu.Vec.LE;
import static dev.kvserve.kernels.cpu.Vec.LE_SHORT;
import static dev.kvserve.kernels.cpu.Vec.highNibbles;
import static dev.kvserve.kernels.cpu.Vec.lowNibbles;
import static dev.kvserve.kernels.cpu.Vec.shiftLeft;
import static dev.kvserve.kernels.cpu.Vec.shiftRight;
import static dev.kvserve.kernels.cpu.Vec.toFloats;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q6_K super-blocks of 256 values (210 bytes): 128 bytes ql (low 4 bits), 64 bytes qh (high 2
 * bits), 16 int8 scales (one per run of 16), f16 d. Each half of 128 values uses 64 ql and 32 qh
 * bytes: for l < 32, ql[l] holds elements l (low nibble) and l+64 (high), ql[l+32] holds l+32 and
 * l+96, and qh[l] holds the top bits of l, l+32, l+64, l+96 in bit pairs 0, 2, 4, 6. So three byte
 * loads at l give four contiguous runs of elements, each a whole run of one scale when FL ≤ 16.
 * Value = d·scale·(q − 32); the 32 is subtracted on the bytes.
 */
final class Q6_KKernel extends WeightKernel {
    private static final int BLOCK_BYTES = 210;

    @Override
    float dot(MemorySegment w, long row, float[] x, int xo, float[] xSums, int so, int cols) {
        float sum = 0f;
        for (int sb = 0; sb < cols / 256; sb++) sum += superBlock(w, row + (long) BLOCK_BYTES * sb, x, xo + 256 * sb);
        return sum;
    }

    /**
     * Σ w·x over one super-block. Kept as its own method returning a float: C2 compiles it as one
     * unit, and no vector crosses a call boundary (a vector passed to or returned from a call that
     * is not inlined is boxed on the heap).
     */
    private static float superBlock(MemorySegment w, long o, float[] x, int xo) {
        float d = Float.float16ToFloat(w.get(LE_SHORT, o + 208));
        FloatVector acc0 = FloatVector.zero(F), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (int h = 0; h < 2; h++) {
            long ql = o + 64L * h;
            long qh = o + 128 + 32L * h;
            long sc = o + 192 + 8L * h;
            int xb = xo + 128 * h;
            for (int run = 0; run < 32; run += 16) {
                FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0;
                for (int j = 0; j < 16; j += FL) {
                    int l = run + j;
                    ByteVector qa = ByteVector.fromMemorySegment(B, w, ql + l, LE);
                    ByteVector qb = ByteVector.fromMemorySegment(B, w, ql + 32 + l, LE);
                    ByteVector hb = ByteVector.fromMemorySegment(B, w, qh + l, LE);
                    ByteVector q0 = lowNibbles(qa).or(shiftLeft(hb, 4).and((byte) 0x30)).sub((byte) 32);
                    ByteVector q1 = lowNibbles(qb).or(shiftLeft(hb, 2).and((byte) 0x30)).sub((byte) 32);
                    ByteVector q2 = highNibbles(qa).or(hb.and((byte) 0x30)).sub((byte) 32);
                    ByteVector q3 = highNibbles(qb).or(shiftRight(hb, 2).and((byte) 0x30)).sub((byte) 32);
                    s0 = toFloats(q0).fma(FloatVector.fromArray(F, x, xb + l), s0);
                    s1 = toFloats(q1).fma(FloatVector.fromArray(F, x, xb + 32 + l), s1);
                    s2 = toFloats(q2).fma(FloatVector.fromArray(F, x, xb + 64 + l), s2);
                    s3 = toFloats(q3).fma(FloatVector.fromArray(F, x, xb + 96 + l), s3);
                }
                int is = run / 16;
                acc0 = s0.fma(FloatVector.broadcast(F, d * w.get(ValueLayout.JAVA_BYTE, sc + is)), acc0);
                acc1 = s1.fma(FloatVector.broadcast(F, d * w.get(ValueLayout.JAVA_BYTE, sc + is + 2)), acc1);
                acc2 = s2.fma(FloatVector.broadcast(F, d * w.get(ValueLayout.JAVA_BYTE, sc + is + 4)), acc2);
                acc3 = s3.fma(FloatVector.broadcast(F, d * w.get(ValueLayout.JAVA_BYTE, sc + is + 6)), acc3);
            }
        }
        return acc0.add(acc1).add(acc2.add(acc3)).reduceLanes(VectorOperators.ADD);
    }

    @Override
    void dot4(MemorySegment w, long row, float[] x, int xo, int xs, float[] xSums, int so, int ss, int cols,
              MemorySegment out, long oi, long os) {
        int superBlocks = cols / 256;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int sb = 0; sb < superBlocks; sb++) {
            long o = row + (long) BLOCK_BYTES * sb;
            float d = Float.float16ToFloat(w.get(LE_SHORT, o + 208));
            for (int h = 0; h < 2; h++) {
                long ql = o + 64L * h;
                long qh = o + 128 + 32L * h;
                long sc = o + 192 + 8L * h;
                int xb = xo + 256 * sb + 128 * h;
                for (int run = 0; run < 32; run += 16) {
                    int is = run / 16;
                    float d0 = d * w.get(ValueLayout.JAVA_BYTE, sc + is);
                    float d1 = d * w.get(ValueLayout.JAVA_BYTE, sc + is + 2);
                    float d2 = d * w.get(ValueLayout.JAVA_BYTE, sc + is + 4);
                    float d3 = d * w.get(ValueLayout.JAVA_BYTE, sc + is + 6);
                    for (int j = 0; j < 16; j += FL) {
                        int l = run + j;
                        ByteVector qa = ByteVector.fromMemorySegment(B, w, ql + l, LE);
                        ByteVector qb = ByteVector.fromMemorySegment(B, w, ql + 32 + l, LE);
                        ByteVector hb = ByteVector.fromMemorySegment(B, w, qh + l, LE);
                        FloatVector w0 = toFloats(lowNibbles(qa).or(shiftLeft(hb, 4).and((byte) 0x30)).sub((byte) 32)).mul(d0);
                        FloatVector w1 = toFloats(lowNibbles(qb).or(shiftLeft(hb, 2).and((byte) 0x30)).sub((byte) 32)).mul(d1);
                        FloatVector w2 = toFloats(highNibbles(qa).or(hb.and((byte) 0x30)).sub((byte) 32)).mul(d2);
                        FloatVector w3 = toFloats(highNibbles(qb).or(shiftRight(hb, 2).and((byte) 0x30)).sub((byte) 32)).mul(d3);
                        int x0 = xb + l;
                        a0 = w0.fma(FloatVector.fromArray(F, x, x0), a0);
                        a1 = w0.fma(FloatVector.fromArray(F, x, x0 + xs), a1);
                        a2 = w0.fma(FloatVector.fromArray(F, x, x0 + 2 * xs), a2);
                        a3 = w0.fma(FloatVector.fromArray(F, x, x0 + 3 * xs), a3);
                        b0 = w1.fma(FloatVector.fromArray(F, x, x0 + 32), b0);
                        b1 = w1.fma(FloatVector.fromArray(F, x, x0 + 32 + xs), b1);
                        b2 = w1.fma(FloatVector.fromArray(F, x, x0 + 32 + 2 * xs), b2);
                        b3 = w1.fma(FloatVector.fromArray(F, x, x0 + 32 + 3 * xs), b3);
                        a0 = w2.fma(FloatVector.fromArray(F, x, x0 + 64), a0);
                        a1 = w2.fma(FloatVector.fromArray(F, x, x0 + 64 + xs), a1);
                        a2 = w2.fma(FloatVector.fromArray(F, x, x0 + 64 + 2 * xs), a2);
                        a3 = w2.fma(FloatVector.fromArray(F, x, x0 + 64 + 3 * xs), a3);
                        b0 = w3.fma(FloatVector.fromArray(F, x, x0 + 96), b0);
                        b1 = w3.fma(FloatVector.fromArray(F, x, x0 + 96 + xs), b1);
                        b2 = w3.fma(FloatVector.fromArray(F, x, x0 + 96 + 2 * xs), b2);
                        b3 = w3.fma(FloatVector.fromArray(F, x, x0 + 96 + 3 * xs), b3);
                    }
                }
            }
        }
        out.setAtIndex(F32, oi, a0.add(b0).reduceLanes(VectorOperators.ADD));
        out.setAtIndex(F32, oi + os, a1.add(b1).reduceLanes(VectorOperators.ADD));
        out.setAtIndex(F32, oi + 2 * os, a2.add(b2).reduceLanes(VectorOperators.ADD));
        out.setAtIndex(F32, oi + 3 * os, a3.add(b3).reduceLanes(VectorOperators.ADD));
    }
}
