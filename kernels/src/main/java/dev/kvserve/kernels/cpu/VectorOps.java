package dev.kvserve.kernels.cpu;

import dev.kvserve.kernels.LaneSum;
import static dev.kvserve.kernels.cpu.Vec.F;
import static dev.kvserve.kernels.cpu.Vec.F32;
import static dev.kvserve.kernels.cpu.Vec.FL;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/**
 * The element-wise and row-wise ops of the decoder on F32 activation rows in host memory. These
 * touch a few KB per token (a matmul touches MBs), so they run on the calling thread.
 */
final class VectorOps {
    private VectorOps() {}

    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();

    private static FloatVector load(MemorySegment s, long index) {
        return FloatVector.fromMemorySegment(F, s, index * Float.BYTES, NATIVE);
    }

    private static void store(FloatVector v, MemorySegment s, long index) {
        v.intoMemorySegment(s, index * Float.BYTES, NATIVE);
    }

    /** out[b] = x[b] / sqrt(mean(x[b]²) + eps) * weight for rows of dim; out may be x. */
    static void rmsnorm(MemorySegment out, MemorySegment x, MemorySegment weight, int dim, int batch, float eps) {
        int upper = F.loopBound(dim);
        for (int b = 0; b < batch; b++) {
            long base = (long) b * dim;
            FloatVector acc0 = FloatVector.zero(F);
            FloatVector acc1 = acc0;
            int i = 0;
            for (; i + 2 * FL <= upper; i += 2 * FL) {
                FloatVector v0 = load(x, base + i);
                FloatVector v1 = load(x, base + i + FL);
                acc0 = v0.fma(v0, acc0);
                acc1 = v1.fma(v1, acc1);
            }
            for (; i < upper; i += FL) {
                FloatVector v = load(x, base + i);
                acc0 = v.fma(v, acc0);
            }
            float ss = LaneSum.sum(acc0.add(acc1));
            for (; i < dim; i++) {
                float v = x.getAtIndex(F32, base + i);
                ss += v * v;
            }
            float scale = (float) (1.0 / Math.sqrt(ss / dim + (double) eps));
            i = 0;
            for (; i < upper; i += FL) {
                store(load(x, base + i).mul(scale).mul(load(weight, i)), out, base + i);
            }
            for (; i < dim; i++) {
                out.setAtIndex(F32, base + i, x.getAtIndex(F32, base + i) * scale * weight.getAtIndex(F32, i));
            }
        }
    }

    /** Numerically stable softmax of each row, in place. */
    static void softmax(MemorySegment x, int dim, int batch) {
        int upper = F.loopBound(dim);
        for (int b = 0; b < batch; b++) {
            long base = (long) b * dim;
            FloatVector vmax = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
            int i = 0;
            for (; i < upper; i += FL) vmax = vmax.max(load(x, base + i));
            float max = vmax.reduceLanes(VectorOperators.MAX);
            for (; i < dim; i++) max = Math.max(max, x.getAtIndex(F32, base + i));
            FloatVector vsum = FloatVector.zero(F);
            i = 0;
            for (; i < upper; i += FL) {
                FloatVector e = load(x, base + i).sub(max).lanewise(VectorOperators.EXP);
                store(e, x, base + i);
                vsum = vsum.add(e);
            }
            float sum = LaneSum.sum(vsum);
            for (; i < dim; i++) {
                float e = (float) Math.exp(x.getAtIndex(F32, base + i) - max);
                x.setAtIndex(F32, base + i, e);
                sum += e;
            }
            float inv = 1f / sum;
            i = 0;
            for (; i < upper; i += FL) store(load(x, base + i).mul(inv), x, base + i);
            for (; i < dim; i++) x.setAtIndex(F32, base + i, x.getAtIndex(F32, base + i) * inv);
        }
    }

    /** gate[i] = gate[i] / (1 + exp(-gate[i])) * up[i] for n values. */
    static void siluMul(MemorySegment gate, MemorySegment up, long n) {
        long upper = n - n % FL;
        long i = 0;
        for (; i < upper; i += FL) {
            FloatVector g = load(gate, i);
            FloatVector silu = g.div(g.neg().lanewise(VectorOperators.EXP).add(1f));
            store(silu.mul(load(up, i)), gate, i);
        }
        for (; i < n; i++) {
            float g = gate.getAtIndex(F32, i);
            gate.setAtIndex(F32, i, (float) (g / (1.0 + Math.exp(-g))) * up.getAtIndex(F32, i));
        }
    }

    /** acc[i] += x[i] for n values. */
    static void add(MemorySegment acc, MemorySegment x, long n) {
        long upper = n - n % FL;
        long i = 0;
        for (; i < upper; i += FL) store(load(acc, i).add(load(x, i)), acc, i);
        for (; i < n; i++) acc.setAtIndex(F32, i, acc.getAtIndex(F32, i) + x.getAtIndex(F32, i));
    }

    /** x[b][i] += bias[i]. */
    static void addBias(MemorySegment x, MemorySegment bias, int dim, int batch) {
        int upper = F.loopBound(dim);
        for (int b = 0; b < batch; b++) {
            long base = (long) b * dim;
            int i = 0;
            for (; i < upper; i += FL) store(load(x, base + i).add(load(bias, i)), x, base + i);
            for (; i < dim; i++) x.setAtIndex(F32, base + i, x.getAtIndex(F32, base + i) + bias.getAtIndex(F32, i));
        }
    }

    /** Σ of every run of 32 values of x[0..n), into sums[sumsOffset..]: the Q4_K kernel's min term. */
    static void blockSums(float[] x, int xOffset, int n, float[] sums, int sumsOffset) {
        for (int blk = 0; blk < n / 32; blk++) {
            int o = xOffset + 32 * blk;
            FloatVector s = FloatVector.fromArray(F, x, o);
            for (int j = FL; j < 32; j += FL) s = s.add(FloatVector.fromArray(F, x, o + j));
            sums[sumsOffset + blk] = LaneSum.sum(s);
        }
    }
}
