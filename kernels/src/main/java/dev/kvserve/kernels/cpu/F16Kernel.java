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
 * F16 weights. The Vector API has no half-to-float conversion, so the floats are built from the
 * bits: exponent and mantissa shifted into float position and multiplied by 2^112 re-biases the
 * exponent (15 → 127) and gets subnormals right in one step; infinities and NaNs, which that
 * multiply would turn finite, are patched back, and the sign (bit 31 of the sign-extended short)
 * is or-ed in last.
 *
 * <p>The conversion is written out at each use instead of in a helper: C2 declines to inline a
 * helper this size, and a FloatVector returned from a call that is not inlined is boxed on the heap.
 */
final class F16Kernel extends WeightKernel {

    @Override
    float dot(MemorySegment w, long row, float[] x, int xo, float[] xSums, int so, int cols) {
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0;
        int c = 0;
        for (int end = cols - 2 * FL; c <= end; c += 2 * FL) {
            long o = row + 2L * c;
            IntVector h0 = (IntVector) ShortVector.fromMemorySegment(S, w, o, LE).convertShape(VectorOperators.S2I, I, 0);
            IntVector h1 = (IntVector) ShortVector.fromMemorySegment(S, w, o + 2L * FL, LE).convertShape(VectorOperators.S2I, I, 0);
            IntVector m0 = h0.and(0x7fff).lanewise(VectorOperators.LSHL, 13);
            IntVector m1 = h1.and(0x7fff).lanewise(VectorOperators.LSHL, 13);
            IntVector b0 = m0.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts()
                    .blend(m0.or(0x7f800000), m0.compare(VectorOperators.GE, 0x0f800000));
            IntVector b1 = m1.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts()
                    .blend(m1.or(0x7f800000), m1.compare(VectorOperators.GE, 0x0f800000));
            a0 = b0.or(h0.and(0x80000000)).reinterpretAsFloats().fma(FloatVector.fromArray(F, x, xo + c), a0);
            a1 = b1.or(h1.and(0x80000000)).reinterpretAsFloats().fma(FloatVector.fromArray(F, x, xo + c + FL), a1);
        }
        for (int end = cols - FL; c <= end; c += FL) {
            IntVector h0 = (IntVector) ShortVector.fromMemorySegment(S, w, row + 2L * c, LE).convertShape(VectorOperators.S2I, I, 0);
            IntVector m0 = h0.and(0x7fff).lanewise(VectorOperators.LSHL, 13);
            IntVector b0 = m0.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts()
                    .blend(m0.or(0x7f800000), m0.compare(VectorOperators.GE, 0x0f800000));
            a0 = b0.or(h0.and(0x80000000)).reinterpretAsFloats().fma(FloatVector.fromArray(F, x, xo + c), a0);
        }
        float sum = LaneSum.sum(a0.add(a1));
        for (; c < cols; c++) sum += Float.float16ToFloat(w.get(LE_SHORT, row + 2L * c)) * x[xo + c];
        return sum;
    }

    @Override
    void dot4(MemorySegment w, long row, float[] x, int xo, int xs, float[] xSums, int so, int ss, int cols,
              MemorySegment out, long oi, long os) {
        // The conversion takes longer than four FMAs, so one accumulator per row is enough.
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        int c = 0;
        for (int end = cols - FL; c <= end; c += FL) {
            IntVector h0 = (IntVector) ShortVector.fromMemorySegment(S, w, row + 2L * c, LE).convertShape(VectorOperators.S2I, I, 0);
            IntVector m0 = h0.and(0x7fff).lanewise(VectorOperators.LSHL, 13);
            IntVector b0 = m0.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts()
                    .blend(m0.or(0x7f800000), m0.compare(VectorOperators.GE, 0x0f800000));
            FloatVector w0 = b0.or(h0.and(0x80000000)).reinterpretAsFloats();
            int x0 = xo + c;
            a0 = w0.fma(FloatVector.fromArray(F, x, x0), a0);
            a1 = w0.fma(FloatVector.fromArray(F, x, x0 + xs), a1);
            a2 = w0.fma(FloatVector.fromArray(F, x, x0 + 2 * xs), a2);
            a3 = w0.fma(FloatVector.fromArray(F, x, x0 + 3 * xs), a3);
        }
        float s0 = LaneSum.sum(a0);
        float s1 = LaneSum.sum(a1);
        float s2 = LaneSum.sum(a2);
        float s3 = LaneSum.sum(a3);
        for (; c < cols; c++) {
            float wc = Float.float16ToFloat(w.get(LE_SHORT, row + 2L * c));
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
            IntVector h0 = (IntVector) ShortVector.fromMemorySegment(S, w, row + 2L * c, LE).convertShape(VectorOperators.S2I, I, 0);
            IntVector m0 = h0.and(0x7fff).lanewise(VectorOperators.LSHL, 13);
            IntVector b0 = m0.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts()
                    .blend(m0.or(0x7f800000), m0.compare(VectorOperators.GE, 0x0f800000));
            b0.or(h0.and(0x80000000)).reinterpretAsFloats().intoArray(dst, c);
        }
        for (; c < cols; c++) dst[c] = Float.float16ToFloat(w.get(LE_SHORT, row + 2L * c));
    }
}
