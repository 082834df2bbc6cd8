package dev.kvserve.kernels.cpu;

import dev.kvserve.kernels.LaneSum;
import static dev.kvserve.kernels.cpu.Vec.F;
import static dev.kvserve.kernels.cpu.Vec.F32;
import static dev.kvserve.kernels.cpu.Vec.FL;
import static dev.kvserve.kernels.cpu.Vec.I;
import static dev.kvserve.kernels.cpu.Vec.LE;
import static dev.kvserve.kernels.cpu.Vec.LE_SHORT;
import static dev.kvserve.kernels.cpu.Vec.S;

import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;

/**
 * BF16 weights: a bfloat16 is the top half of a float, so widening is a 16-bit shift. The widening
 * is written out at each use: a helper returning a FloatVector that C2 chose not to inline would
 * box the vector on the heap.
 */
final class Bf16Kernel extends WeightKernel {

    @Override
    float dot(MemorySegment w, long row, float[] x, int xo, float[] xSums, int so, int cols) {
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        int c = 0;
        for (int end = cols - 4 * FL; c <= end; c += 4 * FL) {
            long o = row + 2L * c;
            a0 = ((IntVector) ShortVector.fromMemorySegment(S, w, o, LE)
                    .convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(FloatVector.fromArray(F, x, xo + c), a0);
            a1 = ((IntVector) ShortVector.fromMemorySegment(S, w, o + 2L * FL, LE)
                    .convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(FloatVector.fromArray(F, x, xo + c + FL), a1);
            a2 = ((IntVector) ShortVector.fromMemorySegment(S, w, o + 4L * FL, LE)
                    .convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(FloatVector.fromArray(F, x, xo + c + 2 * FL), a2);
            a3 = ((IntVector) ShortVector.fromMemorySegment(S, w, o + 6L * FL, LE)
                    .convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(FloatVector.fromArray(F, x, xo + c + 3 * FL), a3);
        }
        for (int end = cols - FL; c <= end; c += FL) {
            a0 = ((IntVector) ShortVector.fromMemorySegment(S, w, row + 2L * c, LE)
                    .convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(FloatVector.fromArray(F, x, xo + c), a0);
        }
        float sum = LaneSum.sum(a0.add(a1).add(a2.add(a3)));
        for (; c < cols; c++) sum += Float.intBitsToFloat((w.get(LE_SHORT, row + 2L * c) & 0xffff) << 16) * x[xo + c];
        return sum;
    }

    @Override
    void dot4(MemorySegment w, long row, float[] x, int xo, int xs, float[] xSums, int so, int ss, int cols,
              MemorySegment out, long oi, long os) {
        // Two accumulators per activation row (even and odd vectors): eight independent FMA chains.
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int c = 0;
        for (int end = cols - 2 * FL; c <= end; c += 2 * FL) {
            FloatVector w0 = ((IntVector) ShortVector.fromMemorySegment(S, w, row + 2L * c, LE)
                    .convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector w1 = ((IntVector) ShortVector.fromMemorySegment(S, w, row + 2L * (c + FL), LE)
                    .convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            int x0 = xo + c;
            a0 = w0.fma(FloatVector.fromArray(F, x, x0), a0);
            a1 = w0.fma(FloatVector.fromArray(F, x, x0 + xs), a1);
            a2 = w0.fma(FloatVector.fromArray(F, x, x0 + 2 * xs), a2);
            a3 = w0.fma(FloatVector.fromArray(F, x, x0 + 3 * xs), a3);
            b0 = w1.fma(FloatVector.fromArray(F, x, x0 + FL), b0);
            b1 = w1.fma(FloatVector.fromArray(F, x, x0 + FL + xs), b1);
            b2 = w1.fma(FloatVector.fromArray(F, x, x0 + FL + 2 * xs), b2);
            b3 = w1.fma(FloatVector.fromArray(F, x, x0 + FL + 3 * xs), b3);
        }
        for (int end = cols - FL; c <= end; c += FL) {
            FloatVector w0 = ((IntVector) ShortVector.fromMemorySegment(S, w, row + 2L * c, LE)
                    .convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            int x0 = xo + c;
            a0 = w0.fma(FloatVector.fromArray(F, x, x0), a0);
            a1 = w0.fma(FloatVector.fromArray(F, x, x0 + xs), a1);
            a2 = w0.fma(FloatVector.fromArray(F, x, x0 + 2 * xs), a2);
            a3 = w0.fma(FloatVector.fromArray(F, x, x0 + 3 * xs), a3);
        }
        float s0 = LaneSum.sum(a0.add(b0));
        float s1 = LaneSum.sum(a1.add(b1));
        float s2 = LaneSum.sum(a2.add(b2));
        float s3 = LaneSum.sum(a3.add(b3));
        for (; c < cols; c++) {
            float wc = Float.intBitsToFloat((w.get(LE_SHORT, row + 2L * c) & 0xffff) << 16);
            s0 += wc * x[xo + c];
            s1 += wc * x[xo + xs + c];
            s2 += wc * x[xo + 2 * xs + c];
            s3 += wc * x[xo + 3 * xs + c];
        }
        out.setAtIndex(F32, oi, s0);
        out.setAtIndex(F32, oi + os, s1);
        out.setAtIndex(F32, oi + 2 * os, s2);
        out.setAtIndex(F32, oi + 3 * os, s3);
    }


    @Override
    void decodeRow(MemorySegment w, long row, float[] dst, int cols) {
        int c = 0;
        for (int end = cols - FL; c <= end; c += FL) {
            ((IntVector) ShortVector.fromMemorySegment(S, w, row + 2L * c, LE).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoArray(dst, c);
        }
        for (; c < cols; c++) dst[c] = Float.intBitsToFloat((w.get(LE_SHORT, row + 2L * c) & 0xffff) << 16);
    }
}
