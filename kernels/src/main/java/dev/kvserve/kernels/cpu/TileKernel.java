package dev.kvserve.kernels.cpu;

import dev.kvserve.kernels.LaneSum;
import static dev.kvserve.kernels.cpu.Vec.F;
import static dev.kvserve.kernels.cpu.Vec.F32;
import static dev.kvserve.kernels.cpu.Vec.FL;

import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.FloatVector;

/**
 * Dots of one decoded weight row (a float tile in L1, see {@link WeightKernel#decodeRow}) with
 * activation rows: the inner loop of large-batch matmuls, the same for every weight type.
 */
final class TileKernel {
    private TileKernel() {}

    static float dot(float[] tile, float[] x, int xo, int cols) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        int c = 0;
        for (int end = cols - 4 * FL; c <= end; c += 4 * FL) {
            a0 = FloatVector.fromArray(F, tile, c).fma(FloatVector.fromArray(F, x, xo + c), a0);
            a1 = FloatVector.fromArray(F, tile, c + FL).fma(FloatVector.fromArray(F, x, xo + c + FL), a1);
            a2 = FloatVector.fromArray(F, tile, c + 2 * FL).fma(FloatVector.fromArray(F, x, xo + c + 2 * FL), a2);
            a3 = FloatVector.fromArray(F, tile, c + 3 * FL).fma(FloatVector.fromArray(F, x, xo + c + 3 * FL), a3);
        }
        for (int end = cols - FL; c <= end; c += FL) {
            a0 = FloatVector.fromArray(F, tile, c).fma(FloatVector.fromArray(F, x, xo + c), a0);
        }
        float sum = LaneSum.sum(a0.add(a1).add(a2.add(a3)));
        for (; c < cols; c++) sum += tile[c] * x[xo + c];
        return sum;
    }

    /**
     * Two decoded weight rows (tiles {@code t0} and {@code t1}) against four rows of x (at
     * xo + k·xs): out[oi + k·os] takes t0's dot with x row k, out[oi + 1 + k·os] t1's. Eight
     * accumulators, each weight vector reused by four activation rows and each activation vector
     * by two weight rows: six loads per eight FMAs, against five per four in {@link #dot4}; loads
     * are what bound a batched matmul whose activations come from L2.
     */
    static void dot2x4(float[] t0, float[] t1, float[] x, int xo, int xs, int cols, MemorySegment out, long oi, long os) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int c = 0;
        for (int end = cols - FL; c <= end; c += FL) {
            FloatVector w0 = FloatVector.fromArray(F, t0, c);
            FloatVector w1 = FloatVector.fromArray(F, t1, c);
            int x0 = xo + c;
            FloatVector x0v = FloatVector.fromArray(F, x, x0);
            FloatVector x1v = FloatVector.fromArray(F, x, x0 + xs);
            FloatVector x2v = FloatVector.fromArray(F, x, x0 + 2 * xs);
            FloatVector x3v = FloatVector.fromArray(F, x, x0 + 3 * xs);
            a0 = w0.fma(x0v, a0);
            a1 = w0.fma(x1v, a1);
            a2 = w0.fma(x2v, a2);
            a3 = w0.fma(x3v, a3);
            b0 = w1.fma(x0v, b0);
            b1 = w1.fma(x1v, b1);
            b2 = w1.fma(x2v, b2);
            b3 = w1.fma(x3v, b3);
        }
        float s0 = LaneSum.sum(a0), s1 = LaneSum.sum(a1), s2 = LaneSum.sum(a2), s3 = LaneSum.sum(a3);
        float u0 = LaneSum.sum(b0), u1 = LaneSum.sum(b1), u2 = LaneSum.sum(b2), u3 = LaneSum.sum(b3);
        for (; c < cols; c++) {
            float wc = t0[c], vc = t1[c];
            float x0 = x[xo + c], x1 = x[xo + xs + c], x2 = x[xo + 2 * xs + c], x3 = x[xo + 3 * xs + c];
            s0 += wc * x0;
            s1 += wc * x1;
            s2 += wc * x2;
            s3 += wc * x3;
            u0 += vc * x0;
            u1 += vc * x1;
            u2 += vc * x2;
            u3 += vc * x3;
        }
        out.setAtIndex(F32, oi, s0);
        out.setAtIndex(F32, oi + os, s1);
        out.setAtIndex(F32, oi + 2 * os, s2);
        out.setAtIndex(F32, oi + 3 * os, s3);
        out.setAtIndex(F32, oi + 1, u0);
        out.setAtIndex(F32, oi + 1 + os, u1);
        out.setAtIndex(F32, oi + 1 + 2 * os, u2);
        out.setAtIndex(F32, oi + 1 + 3 * os, u3);
    }

    /**
     * Four decoded weight rows against four rows of x: out[oi + j + k·os] takes tile j's dot with
     * x row k. Sixteen accumulators, eight loads per sixteen FMAs; {@code cols} must be a multiple
     * of the vector length (no scalar tail).
     */
    static void dot4x4(float[] t0, float[] t1, float[] t2, float[] t3, float[] x, int xo, int xs, int cols, MemorySegment out, long oi, long os) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        FloatVector c0 = a0, c1 = a0, c2 = a0, c3 = a0;
        FloatVector d0 = a0, d1 = a0, d2 = a0, d3 = a0;
        int c = 0;
        for (int end = cols - FL; c <= end; c += FL) {
            int x0 = xo + c;
            FloatVector x0v = FloatVector.fromArray(F, x, x0);
            FloatVector x1v = FloatVector.fromArray(F, x, x0 + xs);
            FloatVector x2v = FloatVector.fromArray(F, x, x0 + 2 * xs);
            FloatVector x3v = FloatVector.fromArray(F, x, x0 + 3 * xs);
            FloatVector w = FloatVector.fromArray(F, t0, c);
            a0 = w.fma(x0v, a0); a1 = w.fma(x1v, a1); a2 = w.fma(x2v, a2); a3 = w.fma(x3v, a3);
            w = FloatVector.fromArray(F, t1, c);
            b0 = w.fma(x0v, b0); b1 = w.fma(x1v, b1); b2 = w.fma(x2v, b2); b3 = w.fma(x3v, b3);
            w = FloatVector.fromArray(F, t2, c);
            c0 = w.fma(x0v, c0); c1 = w.fma(x1v, c1); c2 = w.fma(x2v, c2); c3 = w.fma(x3v, c3);
            w = FloatVector.fromArray(F, t3, c);
            d0 = w.fma(x0v, d0); d1 = w.fma(x1v, d1); d2 = w.fma(x2v, d2); d3 = w.fma(x3v, d3);
        }
        out.setAtIndex(F32, oi, LaneSum.sum(a0)); out.setAtIndex(F32, oi + os, LaneSum.sum(a1));
        out.setAtIndex(F32, oi + 2 * os, LaneSum.sum(a2)); out.setAtIndex(F32, oi + 3 * os, LaneSum.sum(a3));
        out.setAtIndex(F32, oi + 1, LaneSum.sum(b0)); out.setAtIndex(F32, oi + 1 + os, LaneSum.sum(b1));
        out.setAtIndex(F32, oi + 1 + 2 * os, LaneSum.sum(b2)); out.setAtIndex(F32, oi + 1 + 3 * os, LaneSum.sum(b3));
        out.setAtIndex(F32, oi + 2, LaneSum.sum(c0)); out.setAtIndex(F32, oi + 2 + os, LaneSum.sum(c1));
        out.setAtIndex(F32, oi + 2 + 2 * os, LaneSum.sum(c2)); out.setAtIndex(F32, oi + 2 + 3 * os, LaneSum.sum(c3));
        out.setAtIndex(F32, oi + 3, LaneSum.sum(d0)); out.setAtIndex(F32, oi + 3 + os, LaneSum.sum(d1));
        out.setAtIndex(F32, oi + 3 + 2 * os, LaneSum.sum(d2)); out.setAtIndex(F32, oi + 3 + 3 * os, LaneSum.sum(d3));
    }

    /** Four rows of x (at xo + k·xs) against the tile, written to out[oi + k·os]. */
    static void dot4(float[] tile, float[] x, int xo, int xs, int cols, MemorySegment out, long oi, long os) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int c = 0;
        for (int end = cols - 2 * FL; c <= end; c += 2 * FL) {
            FloatVector w0 = FloatVector.fromArray(F, tile, c);
            FloatVector w1 = FloatVector.fromArray(F, tile, c + FL);
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
            FloatVector w0 = FloatVector.fromArray(F, tile, c);
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
            float wc = tile[c];
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
}
