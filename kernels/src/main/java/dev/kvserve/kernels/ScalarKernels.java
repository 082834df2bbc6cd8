package dev.kvserve.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Plain-Java scalar reference for every op of {@link Backend} over host MemorySegments: the test
 * oracle for the SIMD kernels (and any other backend). Written for obviousness, not speed: weights
 * are decoded with {@link GgmlQuantize#dequantizeRow} and sums are taken in double, so the result
 * is closer to exact than any float kernel and differences measure the kernel's own rounding.
 *
 * <p>Activations are row-major F32 in native byte order, as {@link Backend} defines them.
 */
public final class ScalarKernels {

    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private ScalarKernels() {}

    /** Decodes {@code n} values of one row of {@code type} at {@code src[offset]}. */
    public static void dequantizeRow(GgmlType type, MemorySegment src, long offset, float[] dst, int dstOffset, int n) {
        GgmlQuantize.dequantizeRow(type, src, offset, dst, dstOffset, n);
    }

    /** Σ w[row][c] · x[xOffset + c] over the {@code cols} values of one weight row, in double. */
    public static double dot(GgmlType type, MemorySegment w, long rowOffset, float[] x, int xOffset, int cols) {
        float[] row = new float[cols];
        GgmlQuantize.dequantizeRow(type, w, rowOffset, row, 0, cols);
        double sum = 0;
        for (int c = 0; c < cols; c++) sum += (double) row[c] * x[xOffset + c];
        return sum;
    }

    /** {@code out[b][r] = Σ_c w[r][c] · x[b][c]}, the contract of {@link Backend#matmul}. */
    public static void matmul(WeightTensor w, MemorySegment x, MemorySegment out, int batch) {
        int cols = w.cols();
        int rows = w.rows();
        long rowBytes = w.rowBytes();
        float[] xs = toArray(x, (long) batch * cols);
        float[] row = new float[cols];
        for (int r = 0; r < rows; r++) {
            GgmlQuantize.dequantizeRow(w.type(), w.data(), r * rowBytes, row, 0, cols);
            for (int b = 0; b < batch; b++) {
                double sum = 0;
                for (int c = 0; c < cols; c++) sum += (double) row[c] * xs[b * cols + c];
                out.setAtIndex(F32, (long) b * rows + r, (float) sum);
            }
        }
    }

    /**
     * {@link #matmul} with the activations first quantized to int8 blocks of 32 ({@link
     * #quantizeActivations}), as ggml computes Q8_0, Q4_0 and Q5_0 matmuls ({@code vec_dot_q8_0_q8_0},
     * {@code vec_dot_q4_0_q8_0}, {@code vec_dot_q5_0_q8_0}): per block, the exact integer dot of the
     * weight quants with the activation quants times both scales. Q4_1 and Q5_1 (value d·q + m) add
     * m·dx·Σx̂ per block, Σx̂ the exact sum of the block's activation quants (ggml's q8_1 activations
     * store dx·Σx̂ rounded to fp16; the int8 kernels and this oracle keep it exact). The oracle of the
     * CPU backend's int8 kernels. Q4_K and Q6_K: against ggml's q8_K activations, see {@link #matmulQ4_KQuantizedActivations}, {@link #matmulQ6_KQuantizedActivations}.
     */
    public static void matmulQuantizedActivations(WeightTensor w, MemorySegment x, MemorySegment out, int batch) {
        GgmlType type = w.type();
        if (type == GgmlType.Q4_K) {
            matmulQ4_KQuantizedActivations(w, x, out, batch);
            return;
        }
        if (type == GgmlType.Q6_K) {
            matmulQ6_KQuantizedActivations(w, x, out, batch);
            return;
        }
        boolean hasMin = type == GgmlType.Q4_1 || type == GgmlType.Q5_1;
        if (type != GgmlType.Q8_0 && type != GgmlType.Q4_0 && type != GgmlType.Q5_0 && !hasMin) {
            throw new IllegalArgumentException("Q8_0, Q4_0, Q4_1, Q5_0 or Q5_1 weights, not " + type);
        }
        int cols = w.cols();
        int rows = w.rows();
        int blocks = cols / 32;
        byte[] q = new byte[batch * cols];
        float[] d = new float[batch * blocks];
        float[] xs = toArray(x, (long) batch * cols);
        for (int b = 0; b < batch; b++) quantizeActivations(xs, b * cols, cols, q, d);
        int[] wq = new int[32];
        MemorySegment data = w.data();
        for (int r = 0; r < rows; r++) {
            for (int b = 0; b < batch; b++) {
                double sum = 0;
                for (int k = 0; k < blocks; k++) {
                    long o = r * w.rowBytes() + (long) k * type.blockBytes;
                    float dw = Float.float16ToFloat(data.get(ValueLayout.JAVA_SHORT_UNALIGNED, o));
                    blockQuants(type, data, o, wq);
                    long dot = 0, xsum = 0;
                    for (int j = 0; j < 32; j++) {
                        dot += (long) wq[j] * q[b * cols + 32 * k + j];
                        xsum += q[b * cols + 32 * k + j];
                    }
                    float dx = d[b * blocks + k];
                    sum += (double) dw * dx * dot;
                    if (hasMin) sum += (double) Float.float16ToFloat(data.get(ValueLayout.JAVA_SHORT_UNALIGNED, o + 2)) * dx * xsum;
                }
                out.setAtIndex(F32, (long) b * rows + r, (float) sum);
            }
        }
    }

    /**
     * Q4_K against activations quantized as ggml's q8_K ({@link #quantizeActivationsK}), as {@code
     * vec_dot_q4_K_q8_K}: per block of 256, d·dx·Σ_j sc_j·Σ q·x̂ − dmin·dx·Σ_j m_j·Σ x̂ over its eight
     * sub-blocks of 32, both integer sums exact.
     */
    private static void matmulQ4_KQuantizedActivations(WeightTensor w, MemorySegment x, MemorySegment out, int batch) {
        int cols = w.cols();
        int rows = w.rows();
        int blocks = cols / 256;
        byte[] q = new byte[batch * cols];
        float[] d = new float[batch * blocks];
        float[] xs = toArray(x, (long) batch * cols);
        for (int b = 0; b < batch; b++) quantizeActivationsK(xs, b * cols, cols, q, d);
        MemorySegment data = w.data();
        int[] sc = new int[8], m = new int[8];
        for (int r = 0; r < rows; r++) {
            for (int b = 0; b < batch; b++) {
                double sum = 0;
                for (int k = 0; k < blocks; k++) {
                    long o = r * w.rowBytes() + (long) k * GgmlType.Q4_K.blockBytes;
                    float dw = Float.float16ToFloat(data.get(ValueLayout.JAVA_SHORT_UNALIGNED, o));
                    float dmin = Float.float16ToFloat(data.get(ValueLayout.JAVA_SHORT_UNALIGNED, o + 2));
                    for (int j = 0; j < 8; j++) {
                        int scaleMin = GgmlQuantize.scaleMinK4(data, o + 4, j);
                        sc[j] = scaleMin & 0xff;
                        m[j] = scaleMin >>> 8 & 0xff;
                    }
                    long dot = 0, mins = 0;
                    for (int j = 0; j < 8; j++) {
                        long sub = 0, xsum = 0;
                        for (int l = 0; l < 32; l++) {
                            int byteAt = 32 * (j / 2) + l;
                            int nibble = (data.get(ValueLayout.JAVA_BYTE, o + 16 + byteAt) & 0xff) >> (j % 2 == 0 ? 0 : 4) & 15;
                            int xq = q[b * cols + 256 * k + 32 * j + l];
                            sub += (long) nibble * xq;
                            xsum += xq;
                        }
                        dot += sc[j] * sub;
                        mins += m[j] * xsum;
                    }
                    float dx = d[b * blocks + k];
                    sum += (double) dw * dx * dot - (double) dmin * dx * mins;
                }
                out.setAtIndex(F32, (long) b * rows + r, (float) sum);
            }
        }
    }

    /**
     * Q6_K against activations quantized as ggml's q8_K ({@link #quantizeActivationsK}), as {@code
     * vec_dot_q6_K_q8_K}: per block of 256, d·dx·Σ_g sc_g·Σ (q − 32)·x̂ over its sixteen groups of 16,
     * the integer sum exact.
     */
    private static void matmulQ6_KQuantizedActivations(WeightTensor w, MemorySegment x, MemorySegment out, int batch) {
        int cols = w.cols();
        int rows = w.rows();
        int blocks = cols / 256;
        byte[] q = new byte[batch * cols];
        float[] d = new float[batch * blocks];
        float[] xs = toArray(x, (long) batch * cols);
        for (int b = 0; b < batch; b++) quantizeActivationsK(xs, b * cols, cols, q, d);
        MemorySegment data = w.data();
        int[] wq = new int[256];
        double[] sums = new double[batch];
        for (int r = 0; r < rows; r++) {
            java.util.Arrays.fill(sums, 0);
            for (int k = 0; k < blocks; k++) {
                long o = r * w.rowBytes() + (long) k * GgmlType.Q6_K.blockBytes;
                // as ggml's dequantize_row_q6_K: halves of 128 values, ql[64h..], qh[32h..]
                for (int h = 0; h < 2; h++) {
                    for (int l = 0; l < 32; l++) {
                        int ql0 = data.get(ValueLayout.JAVA_BYTE, o + 64 * h + l) & 0xff;
                        int ql1 = data.get(ValueLayout.JAVA_BYTE, o + 64 * h + l + 32) & 0xff;
                        int qh = data.get(ValueLayout.JAVA_BYTE, o + 128 + 32 * h + l) & 0xff;
                        wq[128 * h + l] = ((ql0 & 15) | (qh & 3) << 4) - 32;
                        wq[128 * h + l + 32] = ((ql1 & 15) | (qh >> 2 & 3) << 4) - 32;
                        wq[128 * h + l + 64] = ((ql0 >> 4) | (qh >> 4 & 3) << 4) - 32;
                        wq[128 * h + l + 96] = ((ql1 >> 4) | (qh >> 6 & 3) << 4) - 32;
                    }
                }
                float dw = Float.float16ToFloat(data.get(ValueLayout.JAVA_SHORT_UNALIGNED, o + 208));
                for (int b = 0; b < batch; b++) {
                    long dot = 0;
                    for (int g = 0; g < 16; g++) {
                        long sub = 0;
                        for (int l = 0; l < 16; l++) sub += (long) wq[16 * g + l] * q[b * cols + 256 * k + 16 * g + l];
                        dot += data.get(ValueLayout.JAVA_BYTE, o + 192 + g) * sub;   // signed 8-bit scale
                    }
                    sums[b] += (double) dw * d[b * blocks + k] * dot;
                }
            }
            for (int b = 0; b < batch; b++) out.setAtIndex(F32, (long) b * rows + r, (float) sums[b]);
        }
    }

    /**
     * Quantizes {@code x[offset, offset+cols)} (cols a multiple of 256) as ggml's {@code
     * quantize_row_q8_K_ref}: per block of 256, iscale = −127 / the first value of largest
     * magnitude, quant = min(127, round-half-even(iscale·x)), scale 1/iscale as a float (0 and
     * quants 0 for a block of zeros), into {@code q[offset..]} and {@code d[offset/256..]}.
     */
    public static void quantizeActivationsK(float[] x, int offset, int cols, byte[] q, float[] d) {
        for (int k = 0; k < cols / 256; k++) {
            int base = offset + 256 * k;
            float max = 0, amax = 0;
            for (int j = 0; j < 256; j++) {
                float ax = Math.abs(x[base + j]);
                if (ax > amax) {
                    amax = ax;
                    max = x[base + j];
                }
            }
            float iscale = amax != 0 ? -127f / max : 0f;
            d[base / 256] = amax != 0 ? 1f / iscale : 0f;
            for (int j = 0; j < 256; j++) q[base + j] = (byte) Math.min(127, (int) Math.rint(iscale * x[base + j]));
        }
    }

    /**
     * The 32 integer quants of the block at {@code o}, offsets applied (value = d · quant, plus m for
     * Q4_1/Q5_1): Q8_0 q; Q4_0 nibble − 8; Q5_0 (nibble | fifth bit « 4) − 16; Q4_1 nibble; Q5_1
     * nibble | fifth bit « 4. Nibble j &lt; 16 is the low half of qs[j], j ≥ 16 the high half of qs[j − 16];
     * the fifth bit of value j is bit j of the little-endian 32-bit qh.
     */
    private static void blockQuants(GgmlType type, MemorySegment data, long o, int[] wq) {
        if (type == GgmlType.Q8_0) {
            for (int j = 0; j < 32; j++) wq[j] = data.get(ValueLayout.JAVA_BYTE, o + 2 + j);
            return;
        }
        long qs = switch (type) {
            case Q4_0 -> o + 2;
            case Q4_1 -> o + 4;
            case Q5_0 -> o + 6;
            default -> o + 8;   // Q5_1
        };
        int qh = switch (type) {
            case Q5_0 -> data.get(ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), o + 2);
            case Q5_1 -> data.get(ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), o + 4);
            default -> 0;
        };
        int offset = switch (type) {
            case Q4_0 -> 8;
            case Q5_0 -> 16;
            default -> 0;
        };
        for (int j = 0; j < 32; j++) {
            int nibble = (data.get(ValueLayout.JAVA_BYTE, qs + j % 16) & 0xff) >> (j < 16 ? 0 : 4) & 15;
            wq[j] = (nibble | (qh >>> j & 1) << 4) - offset;
        }
    }

    /**
     * Quantizes {@code x[offset, offset+cols)} to int8 blocks of 32 as ggml's AVX {@code
     * quantize_row_q8_0} does: scale max|x|/127 kept as fp16, quant = round-half-even(x · 127/max|x|),
     * into {@code q[offset..]} and {@code d[offset/32..]}.
     */
    public static void quantizeActivations(float[] x, int offset, int cols, byte[] q, float[] d) {
        for (int k = 0; k < cols / 32; k++) {
            int base = offset + 32 * k;
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[base + j]));
            d[base / 32] = Float.float16ToFloat(Float.floatToFloat16(amax / 127f));
            float id = amax != 0 ? 127f / amax : 0f;
            for (int j = 0; j < 32; j++) q[base + j] = (byte) Math.rint(x[base + j] * id);
        }
    }

    /** out[b] = x[b] / sqrt(mean(x[b]²) + eps) * weight; out may be x. */
    public static void rmsnorm(MemorySegment out, MemorySegment x, MemorySegment weight, int dim, int batch, float eps) {
        for (int b = 0; b < batch; b++) {
            long base = (long) b * dim;
            double ss = 0;
            for (int i = 0; i < dim; i++) {
                double v = x.getAtIndex(F32, base + i);
                ss += v * v;
            }
            double scale = 1.0 / Math.sqrt(ss / dim + eps);
            for (int i = 0; i < dim; i++) {
                double v = x.getAtIndex(F32, base + i) * scale * weight.getAtIndex(F32, i);
                out.setAtIndex(F32, base + i, (float) v);
            }
        }
    }

    /**
     * Rotary embedding of each head of each row: pair (2i, 2i+1) when {@code !rope.neox()}, pair
     * (i, i + dims/2) when {@code rope.neox()}, by angle {@link RopeConfig#theta}; dimensions past
     * {@code rope.dims()} are left alone.
     */
    public static void rope(MemorySegment x, int[] positions, int heads, int headDim, RopeConfig rope, int batch) {
        int half = rope.dims() / 2;
        for (int b = 0; b < batch; b++) {
            for (int h = 0; h < heads; h++) {
                long base = ((long) b * heads + h) * headDim;
                for (int i = 0; i < half; i++) {
                    double theta = rope.theta(positions[b], i);
                    double cos = Math.cos(theta);
                    double sin = Math.sin(theta);
                    long i0 = rope.neox() ? base + i : base + 2L * i;
                    long i1 = rope.neox() ? base + i + half : base + 2L * i + 1;
                    double x0 = x.getAtIndex(F32, i0);
                    double x1 = x.getAtIndex(F32, i1);
                    x.setAtIndex(F32, i0, (float) (x0 * cos - x1 * sin));
                    x.setAtIndex(F32, i1, (float) (x0 * sin + x1 * cos));
                }
            }
        }
    }

    /** Numerically stable softmax of each row of {@code dim}, in place. */
    public static void softmax(MemorySegment x, int dim, int batch) {
        for (int b = 0; b < batch; b++) {
            long base = (long) b * dim;
            float max = Float.NEGATIVE_INFINITY;
            for (int i = 0; i < dim; i++) max = Math.max(max, x.getAtIndex(F32, base + i));
            double sum = 0;
            for (int i = 0; i < dim; i++) sum += Math.exp(x.getAtIndex(F32, base + i) - max);
            for (int i = 0; i < dim; i++) {
                x.setAtIndex(F32, base + i, (float) (Math.exp(x.getAtIndex(F32, base + i) - max) / sum));
            }
        }
    }

    /** gate[i] = silu(gate[i]) · up[i] for {@code dim * batch} values. */
    public static void siluMul(MemorySegment gate, MemorySegment up, int dim, int batch) {
        long n = (long) dim * batch;
        for (long i = 0; i < n; i++) {
            double g = gate.getAtIndex(F32, i);
            double silu = g / (1.0 + Math.exp(-g));
            gate.setAtIndex(F32, i, (float) (silu * up.getAtIndex(F32, i)));
        }
    }

    /** acc[i] += x[i] for i < n. */
    public static void add(MemorySegment acc, MemorySegment x, long n) {
        for (long i = 0; i < n; i++) acc.setAtIndex(F32, i, acc.getAtIndex(F32, i) + x.getAtIndex(F32, i));
    }

    /** x[b][i] += bias[i]. */
    public static void addBias(MemorySegment x, MemorySegment bias, int dim, int batch) {
        for (int b = 0; b < batch; b++) {
            for (int i = 0; i < dim; i++) {
                long at = (long) b * dim + i;
                x.setAtIndex(F32, at, x.getAtIndex(F32, at) + bias.getAtIndex(F32, i));
            }
        }
    }

    /** out[b] = row tokens[b] of {@code table}, decoded to F32. */
    public static void embed(WeightTensor table, int[] tokens, MemorySegment out) {
        int cols = table.cols();
        float[] row = new float[cols];
        for (int b = 0; b < tokens.length; b++) {
            GgmlQuantize.dequantizeRow(table.type(), table.data(), tokens[b] * table.rowBytes(), row, 0, cols);
            MemorySegment.copy(row, 0, out, F32, (long) b * cols * Float.BYTES, cols);
        }
    }

    private static float[] toArray(MemorySegment seg, long n) {
        float[] a = new float[Math.toIntExact(n)];
        MemorySegment.copy(seg, F32, 0, a, 0, a.length);
        return a;
    }
}
