package dev.kvserve.kernels;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Encoders and decoders for ggml's weight storage types, one row at a time, on MemorySegments.
 *
 * <p>The encoders follow ggml's reference {@code quantize_row_*_ref} algorithms (the ones
 * {@code llama-quantize} runs when it is given no importance matrix; for IQ4_NL that is
 * {@code quantize_iq4_nl}, whose scale search differs from {@code quantize_row_iq4_nl_ref}), step
 * by step and in float arithmetic, so that the output is byte for byte what llama.cpp writes
 * (GgmlQuantizeTest compares every block type with ggml-quants.c's own output). For the K types
 * that holds for a llama.cpp built without floating-point contraction; a build that fuses
 * multiply-adds may differ in the last bit of a scale now and then, which moves a few quants by one.
 *
 * <p>Block layouts (all little-endian, as in GGUF):
 * <ul>
 *   <li>Q8_0: f16 scale d, 32 int8 quants; value = q * d.</li>
 *   <li>Q4_0: f16 scale d, 16 bytes; the low nibble of byte j is element j, the high nibble element
 *       j + 16; value = (q - 8) * d.</li>
 *   <li>Q4_1: f16 d, f16 m, 16 bytes of nibbles as Q4_0; value = q * d + m.</li>
 *   <li>Q5_0: f16 d, 32-bit qh (bit j is the fifth bit of element j), 16 bytes of nibbles as Q4_0;
 *       value = (q - 16) * d. Q5_1: f16 d, f16 m, qh, nibbles; value = q * d + m.</li>
 *   <li>IQ4_NL: f16 d, 16 bytes of nibbles as Q4_0, each an index into {@link #IQ4_NL_VALUES};
 *       value = d * IQ4_NL_VALUES[q].</li>
 *   <li>Q2_K, Q3_K, Q5_K: see the comments of {@code quantizeQ2K}, {@code quantizeQ3K}, {@code quantizeQ5K}.</li>
 *   <li>Q4_K: super-block of 256 = 8 sub-blocks of 32. f16 d, f16 dmin, 12 bytes of 6-bit scales
 *       and mins (packed as in {@link #scaleMinK4}), 128 bytes of nibbles: bytes 32c..32c+31 hold
 *       sub-block 2c in their low nibbles and sub-block 2c+1 in their high nibbles;
 *       value = d * scale * q - dmin * min.</li>
 *   <li>Q6_K: super-block of 256 = 16 sub-blocks of 16. 128 bytes ql (low 4 bits), 64 bytes qh
 *       (high 2 bits), 16 int8 scales, f16 d; value = d * scale * (q - 32). Each half of 128
 *       elements uses 64 ql bytes and 32 qh bytes, see {@link #dequantizeQ6K}.</li>
 * </ul>
 */
public final class GgmlQuantize {

    static final ValueLayout.OfShort LE_SHORT =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt LE_INT =
            ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfFloat LE_FLOAT =
            ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** ggml's GROUP_MAX_EPS: groups whose largest magnitude is below this are stored as zero. */
    private static final float GROUP_MAX_EPS = 1e-15f;

    private GgmlQuantize() {}

    // ---------------------------------------------------------------- public API

    /** Encodes all of {@code src} as one row of {@code type} at {@code dst[dstOffset]}. */
    public static void quantizeRow(GgmlType type, float[] src, MemorySegment dst, long dstOffset) {
        quantizeRow(type, src, 0, src.length, dst, dstOffset);
    }

    /** Encodes {@code src[srcOffset .. srcOffset+n)} as {@code type} at {@code dst[dstOffset]}. */
    public static void quantizeRow(GgmlType type, float[] src, int srcOffset, int n,
                                   MemorySegment dst, long dstOffset) {
        long bytes = checkRow(type, n);
        if (srcOffset < 0 || srcOffset + (long) n > src.length) {
            throw new IndexOutOfBoundsException("source range " + srcOffset + "+" + n + " outside float[" + src.length + "]");
        }
        checkSegment(dst, dstOffset, bytes, "destination");
        switch (type) {
            case F32 -> {
                for (int i = 0; i < n; i++) dst.set(LE_FLOAT, dstOffset + 4L * i, src[srcOffset + i]);
            }
            case F16 -> {
                for (int i = 0; i < n; i++) dst.set(LE_SHORT, dstOffset + 2L * i, floatToF16(src[srcOffset + i]));
            }
            case BF16 -> {
                for (int i = 0; i < n; i++) dst.set(LE_SHORT, dstOffset + 2L * i, floatToBf16(src[srcOffset + i]));
            }
            case Q8_0 -> {
                for (int b = 0; b < n / 32; b++) quantizeQ8_0(src, srcOffset + 32 * b, dst, dstOffset + 34L * b);
            }
            case Q4_0 -> {
                for (int b = 0; b < n / 32; b++) quantizeQ4_0(src, srcOffset + 32 * b, dst, dstOffset + 18L * b);
            }
            case Q4_1 -> {
                for (int b = 0; b < n / 32; b++) quantizeQ4_1(src, srcOffset + 32 * b, dst, dstOffset + 20L * b);
            }
            case Q5_0 -> {
                for (int b = 0; b < n / 32; b++) quantizeQ5_0(src, srcOffset + 32 * b, dst, dstOffset + 22L * b);
            }
            case Q5_1 -> {
                for (int b = 0; b < n / 32; b++) quantizeQ5_1(src, srcOffset + 32 * b, dst, dstOffset + 24L * b);
            }
            case IQ4_NL -> {
                QuantScratch s = new QuantScratch();
                for (int b = 0; b < n / 32; b++) quantizeIq4Nl(src, srcOffset + 32 * b, dst, dstOffset + 18L * b, s);
            }
            case Q2_K -> {
                QuantScratch s = new QuantScratch();
                for (int b = 0; b < n / 256; b++) quantizeQ2K(src, srcOffset + 256 * b, dst, dstOffset + 84L * b, s);
            }
            case Q3_K -> {
                QuantScratch s = new QuantScratch();
                for (int b = 0; b < n / 256; b++) quantizeQ3K(src, srcOffset + 256 * b, dst, dstOffset + 110L * b, s);
            }
            case Q4_K -> {
                QuantScratch s = new QuantScratch();
                for (int b = 0; b < n / 256; b++) quantizeQ4K(src, srcOffset + 256 * b, dst, dstOffset + 144L * b, s);
            }
            case Q5_K -> {
                QuantScratch s = new QuantScratch();
                for (int b = 0; b < n / 256; b++) quantizeQ5K(src, srcOffset + 256 * b, dst, dstOffset + 176L * b, s);
            }
            case Q6_K -> {
                QuantScratch s = new QuantScratch();
                for (int b = 0; b < n / 256; b++) quantizeQ6K(src, srcOffset + 256 * b, dst, dstOffset + 210L * b, s);
            }
            default -> throw new IllegalArgumentException("no encoder for weight type " + type);
        }
    }

    /** Decodes {@code dst.length} values of {@code type} stored at {@code src[offset]}. */
    public static void dequantizeRow(GgmlType type, MemorySegment src, long offset, float[] dst) {
        dequantizeRow(type, src, offset, dst, 0, dst.length);
    }

    /** Decodes {@code n} values of {@code type} stored at {@code src[offset]} into {@code dst[dstOffset..]}. */
    public static void dequantizeRow(GgmlType type, MemorySegment src, long offset,
                                     float[] dst, int dstOffset, int n) {
        long bytes = checkRow(type, n);
        if (dstOffset < 0 || dstOffset + (long) n > dst.length) {
            throw new IndexOutOfBoundsException("destination range " + dstOffset + "+" + n + " outside float[" + dst.length + "]");
        }
        checkSegment(src, offset, bytes, "source");
        switch (type) {
            case F32 -> {
                for (int i = 0; i < n; i++) dst[dstOffset + i] = src.get(LE_FLOAT, offset + 4L * i);
            }
            case F16 -> {
                for (int i = 0; i < n; i++) dst[dstOffset + i] = f16ToFloat(src.get(LE_SHORT, offset + 2L * i));
            }
            case BF16 -> {
                for (int i = 0; i < n; i++) dst[dstOffset + i] = bf16ToFloat(src.get(LE_SHORT, offset + 2L * i));
            }
            case Q8_0 -> {
                for (int b = 0; b < n / 32; b++) dequantizeQ8_0(src, offset + 34L * b, dst, dstOffset + 32 * b);
            }
            case Q4_0 -> {
                for (int b = 0; b < n / 32; b++) dequantizeQ4_0(src, offset + 18L * b, dst, dstOffset + 32 * b);
            }
            case Q4_1 -> {
                for (int b = 0; b < n / 32; b++) dequantizeQ4_1(src, offset + 20L * b, dst, dstOffset + 32 * b);
            }
            case Q5_0 -> {
                for (int b = 0; b < n / 32; b++) dequantizeQ5_0(src, offset + 22L * b, dst, dstOffset + 32 * b);
            }
            case Q5_1 -> {
                for (int b = 0; b < n / 32; b++) dequantizeQ5_1(src, offset + 24L * b, dst, dstOffset + 32 * b);
            }
            case IQ4_NL -> {
                for (int b = 0; b < n / 32; b++) dequantizeIq4Nl(src, offset + 18L * b, dst, dstOffset + 32 * b);
            }
            case Q2_K -> {
                for (int b = 0; b < n / 256; b++) dequantizeQ2K(src, offset + 84L * b, dst, dstOffset + 256 * b);
            }
            case Q3_K -> {
                for (int b = 0; b < n / 256; b++) dequantizeQ3K(src, offset + 110L * b, dst, dstOffset + 256 * b);
            }
            case Q4_K -> {
                for (int b = 0; b < n / 256; b++) dequantizeQ4K(src, offset + 144L * b, dst, dstOffset + 256 * b);
            }
            case Q5_K -> {
                for (int b = 0; b < n / 256; b++) dequantizeQ5K(src, offset + 176L * b, dst, dstOffset + 256 * b);
            }
            case Q6_K -> {
                for (int b = 0; b < n / 256; b++) dequantizeQ6K(src, offset + 210L * b, dst, dstOffset + 256 * b);
            }
            default -> throw new IllegalArgumentException("no decoder for weight type " + type);
        }
    }

    /**
     * A new segment (from {@code arena}, 64-byte aligned) holding {@code values.length / cols} rows
     * of {@code cols} values each, every row encoded as {@code type}.
     */
    public static MemorySegment quantize(GgmlType type, float[] values, int cols, Arena arena) {
        if (cols <= 0 || values.length % cols != 0) {
            throw new IllegalArgumentException(values.length + " values are not whole rows of " + cols);
        }
        int rows = values.length / cols;
        long rowBytes = checkRow(type, cols);
        MemorySegment out = arena.allocate(rowBytes * rows, 64);
        for (int r = 0; r < rows; r++) quantizeRow(type, values, r * cols, cols, out, r * rowBytes);
        return out;
    }

    /** IEEE binary16 bits of {@code f}, rounded to nearest even (what ggml's FP32_TO_FP16 does). */
    public static short floatToF16(float f) {
        return Float.floatToFloat16(f);
    }

    public static float f16ToFloat(short h) {
        return Float.float16ToFloat(h);
    }

    /** bfloat16 bits of {@code f}: round to nearest even, NaN kept quiet (ggml_compute_fp32_to_bf16). */
    public static short floatToBf16(float f) {
        int u = Float.floatToRawIntBits(f);
        if ((u & 0x7fffffff) > 0x7f800000) {
            return (short) ((u >>> 16) | 64);
        }
        return (short) ((u + (0x7fff + ((u >>> 16) & 1))) >>> 16);
    }

    public static float bf16ToFloat(short b) {
        return Float.intBitsToFloat((b & 0xffff) << 16);
    }

    /**
     * Scale (low byte) and min (second byte) of sub-block {@code j} (0..7) of a Q4_K super-block
     * whose 12 scale bytes start at {@code scalesOffset}. The first four sub-blocks keep their 6-bit
     * scale and min in the low 6 bits of bytes j and j+4; the last four keep their low 4 bits in
     * the nibbles of byte j+4 and their top 2 bits in the spare top bits of bytes j-4 and j.
     */
    public static int scaleMinK4(MemorySegment block, long scalesOffset, int j) {
        int sc;
        int m;
        if (j < 4) {
            sc = block.get(ValueLayout.JAVA_BYTE, scalesOffset + j) & 63;
            m = block.get(ValueLayout.JAVA_BYTE, scalesOffset + j + 4) & 63;
        } else {
            int packed = block.get(ValueLayout.JAVA_BYTE, scalesOffset + j + 4) & 0xff;
            int hiScale = (block.get(ValueLayout.JAVA_BYTE, scalesOffset + j - 4) & 0xff) >>> 6;
            int hiMin = (block.get(ValueLayout.JAVA_BYTE, scalesOffset + j) & 0xff) >>> 6;
            sc = (packed & 0xF) | (hiScale << 4);
            m = (packed >>> 4) | (hiMin << 4);
        }
        return sc | (m << 8);
    }

    // ---------------------------------------------------------------- checks

    private static long checkRow(GgmlType type, int n) {
        if (type == null) throw new IllegalArgumentException("weight type is null");
        if (!type.supported) throw new IllegalArgumentException("weight type " + type + " is not supported");
        if (n < 0) throw new IllegalArgumentException("negative row length " + n);
        return type.bytesFor(n);
    }

    private static void checkSegment(MemorySegment seg, long offset, long bytes, String what) {
        if (offset < 0 || offset + bytes > seg.byteSize()) {
            throw new IndexOutOfBoundsException(what + " needs bytes [" + offset + ", " + (offset + bytes)
                    + ") but the segment holds " + seg.byteSize());
        }
    }

    // ---------------------------------------------------------------- Q8_0

    private static void quantizeQ8_0(float[] x, int xo, MemorySegment y, long yo) {
        float amax = 0f;
        for (int j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[xo + j]));
        float d = amax / 127f;
        float id = d != 0f ? 1.0f / d : 0.0f;
        y.set(LE_SHORT, yo, floatToF16(d));
        for (int j = 0; j < 32; j++) {
            float x0 = x[xo + j] * id;
            y.set(ValueLayout.JAVA_BYTE, yo + 2 + j, (byte) roundHalfAway(x0));
        }
    }

    private static void dequantizeQ8_0(MemorySegment x, long xo, float[] y, int yo) {
        float d = f16ToFloat(x.get(LE_SHORT, xo));
        for (int j = 0; j < 32; j++) y[yo + j] = x.get(ValueLayout.JAVA_BYTE, xo + 2 + j) * d;
    }

    /** C's roundf: halves go away from zero (Math.round would send -2.5 to -2). Exact in double. */
    private static int roundHalfAway(float v) {
        double r = Math.floor(Math.abs((double) v) + 0.5);
        return (int) (v < 0 ? -r : r);
    }

    // ---------------------------------------------------------------- Q4_0

    private static void quantizeQ4_0(float[] x, int xo, MemorySegment y, long yo) {
        // The scale is signed so that the value of largest magnitude maps exactly onto -8, the end
        // of the range that has one more step than the other.
        float amax = 0f;
        float max = 0f;
        for (int j = 0; j < 32; j++) {
            float v = x[xo + j];
            if (amax < Math.abs(v)) {
                amax = Math.abs(v);
                max = v;
            }
        }
        float d = max / -8;
        float id = d != 0f ? 1.0f / d : 0.0f;
        y.set(LE_SHORT, yo, floatToF16(d));
        for (int j = 0; j < 16; j++) {
            float x0 = x[xo + j] * id;
            float x1 = x[xo + 16 + j] * id;
            // (int8_t)(v + 8.5f) truncates toward zero; the sum is never negative here.
            int xi0 = Math.min(15, (int) (x0 + 8.5f));
            int xi1 = Math.min(15, (int) (x1 + 8.5f));
            y.set(ValueLayout.JAVA_BYTE, yo + 2 + j, (byte) (xi0 | (xi1 << 4)));
        }
    }

    private static void dequantizeQ4_0(MemorySegment x, long xo, float[] y, int yo) {
        float d = f16ToFloat(x.get(LE_SHORT, xo));
        for (int j = 0; j < 16; j++) {
            int q = x.get(ValueLayout.JAVA_BYTE, xo + 2 + j) & 0xff;
            y[yo + j] = ((q & 0xF) - 8) * d;
            y[yo + j + 16] = ((q >>> 4) - 8) * d;
        }
    }

    // ---------------------------------------------------------------- K-quant helpers

    /** Working arrays of one super-block, reused across the blocks of a row. */
    private static final class QuantScratch {
        final int[] levels = new int[256];
        final int[] levelsAux = new int[32];
        final float[] weights = new float[32];
        final float[] scales = new float[16];
        final float[] mins = new float[16];
        final float[] minOut = new float[1];
    }

    /** ggml's nearest_int: round half to even through the float adder (valid for |v| < 2^22). */
    private static int nearestInt(float v) {
        int i = Float.floatToRawIntBits(v + 12582912.f);
        return (i & 0x007fffff) - 0x00400000;
    }

    /**
     * ggml's make_qkx2_quants: levels 0..nmax with a scale and a non-positive offset ("min") for
     * n values, chosen by a weighted least-squares search over nstep+1 trial scales.
     * Returns the scale; stores -min in {@code theMin[0]} and the levels in {@code levels[lo..lo+n)}.
     */
    private static float makeQkx2Quants(int n, int nmax, float[] x, int xo, float[] weights,
                                        int[] levels, int lo, float[] theMin, int[] aux,
                                        float rmin, float rdelta, int nstep, boolean useMad) {
        float min = x[xo];
        float max = x[xo];
        float sumW = weights[0];
        float sumX = sumW * x[xo];
        for (int i = 1; i < n; ++i) {
            if (x[xo + i] < min) min = x[xo + i];
            if (x[xo + i] > max) max = x[xo + i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[xo + i];
        }
        if (min > 0) min = 0;
        if (max == min) {
            for (int i = 0; i < n; ++i) levels[lo + i] = 0;
            theMin[0] = -min;
            return 0.f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearestInt(iscale * (x[xo + i] - min));
            levels[lo + i] = Math.max(0, Math.min(nmax, l));
            float diff = scale * levels[lo + i] + min - x[xo + i];
            diff = useMad ? Math.abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }
        if (nstep < 1) {
            theMin[0] = -min;
            return scale;
        }
        for (int is = 0; is <= nstep; ++is) {
            iscale = (rmin + rdelta * is + nmax) / (max - min);
            float sumL = 0;
            float sumL2 = 0;
            float sumXL = 0;
            for (int i = 0; i < n; ++i) {
                int l = nearestInt(iscale * (x[xo + i] - min));
                l = Math.max(0, Math.min(nmax, l));
                aux[i] = l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[xo + i];
            }
            float det = sumW * sumL2 - sumL * sumL;
            if (det > 0) {
                float thisScale = (sumW * sumXL - sumX * sumL) / det;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / det;
                if (thisMin > 0) {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float curError = 0;
                for (int i = 0; i < n; ++i) {
                    float diff = thisScale * aux[i] + thisMin - x[xo + i];
                    diff = useMad ? Math.abs(diff) : diff * diff;
                    curError += weights[i] * diff;
                }
                if (curError < bestError) {
                    for (int i = 0; i < n; ++i) levels[lo + i] = aux[i];
                    bestError = curError;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin[0] = -min;
        return scale;
    }

    /**
     * ggml's make_qx_quants with rmse_type 1 and no importance weights (weights are x²): symmetric
     * levels -nmax..nmax-1 stored offset by nmax; tries 18 scales around nmax/max and keeps the one
     * with the best weighted fit. Returns the scale.
     */
    private static float makeQxQuants(int n, int nmax, float[] x, int xo, int[] levels, int lo) {
        float max = 0;
        float amax = 0;
        for (int i = 0; i < n; ++i) {
            float ax = Math.abs(x[xo + i]);
            if (ax > amax) {
                amax = ax;
                max = x[xo + i];
            }
        }
        if (amax < GROUP_MAX_EPS) {
            for (int i = 0; i < n; ++i) levels[lo + i] = 0;
            return 0.f;
        }
        float iscale = -nmax / max;
        float sumlx = 0;
        float suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearestInt(iscale * x[xo + i]);
            l = Math.max(-nmax, Math.min(nmax - 1, l));
            levels[lo + i] = l + nmax;
            float w = x[xo + i] * x[xo + i];
            sumlx += w * x[xo + i] * l;
            suml2 += w * l * l;
        }
        float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
        float best = scale * sumlx;
        for (int is = -9; is <= 9; ++is) {
            if (is == 0) continue;
            iscale = -(nmax + 0.1f * is) / max;
            sumlx = 0;
            suml2 = 0;
            for (int i = 0; i < n; ++i) {
                int l = nearestInt(iscale * x[xo + i]);
                l = Math.max(-nmax, Math.min(nmax - 1, l));
                float w = x[xo + i] * x[xo + i];
                sumlx += w * x[xo + i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2) {
                for (int i = 0; i < n; ++i) {
                    int l = nearestInt(iscale * x[xo + i]);
                    levels[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, l));
                }
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    // ---------------------------------------------------------------- Q4_K

    private static void quantizeQ4K(float[] x, int xo, MemorySegment y, long yo, QuantScratch s) {
        int[] levels = s.levels;
        quantizeScalesMinsK(x, xo, y, yo, s, 15, -1.f, 20);
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; ++l) {
                int q = levels[64 * c + l] | (levels[64 * c + l + 32] << 4);
                y.set(ValueLayout.JAVA_BYTE, yo + 16 + 32 * c + l, (byte) q);
            }
        }
    }

    /**
     * The part Q4_K and Q5_K share (ggml's quantize_row_q4_K_ref / q5_K_ref): per sub-block of 32 a
     * scale and min by {@link #makeQkx2Quants} with weights |x| + rms, both quantized to 6 bits
     * against f16 super-block scales d and dmin; writes d, dmin and the 12 scale bytes at
     * {@code yo}, and leaves in {@code s.levels} the levels 0..nmax re-quantized against the
     * scales actually stored.
     */
    private static void quantizeScalesMinsK(float[] x, int xo, MemorySegment y, long yo, QuantScratch s,
                                            int nmax, float rmin, int nstep) {
        int[] levels = s.levels;
        float[] weights = s.weights;
        float[] scales = s.scales;
        float[] mins = s.mins;
        float maxScale = 0;
        float maxMin = 0;
        for (int j = 0; j < 8; ++j) {
            // Weights favour large values (and the sub-block's typical size), as ggml does.
            float sumX2 = 0;
            for (int l = 0; l < 32; ++l) sumX2 += x[xo + 32 * j + l] * x[xo + 32 * j + l];
            float avX = (float) Math.sqrt(sumX2 / 32);
            for (int l = 0; l < 32; ++l) weights[l] = avX + Math.abs(x[xo + 32 * j + l]);
            scales[j] = makeQkx2Quants(32, nmax, x, xo + 32 * j, weights, levels, 32 * j, s.minOut,
                    s.levelsAux, rmin, 0.1f, nstep, false);
            mins[j] = s.minOut[0];
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }
        float invScale = maxScale > 0 ? 63.f / maxScale : 0.f;
        float invMin = maxMin > 0 ? 63.f / maxMin : 0.f;
        byte[] packed = new byte[12];
        for (int j = 0; j < 8; ++j) {
            int ls = Math.min(63, nearestInt(invScale * scales[j]) & 0xff);
            int lm = Math.min(63, nearestInt(invMin * mins[j]) & 0xff);
            if (j < 4) {
                packed[j] = (byte) ls;
                packed[j + 4] = (byte) lm;
            } else {
                packed[j + 4] = (byte) ((ls & 0xF) | ((lm & 0xF) << 4));
                packed[j - 4] |= (byte) ((ls >> 4) << 6);
                packed[j] |= (byte) ((lm >> 4) << 6);
            }
        }
        short dBits = floatToF16(maxScale / 63.f);
        short dminBits = floatToF16(maxMin / 63.f);
        y.set(LE_SHORT, yo, dBits);
        y.set(LE_SHORT, yo + 2, dminBits);
        MemorySegment.copy(packed, 0, y, ValueLayout.JAVA_BYTE, yo + 4, 12);

        // Re-quantize against the rounded (6-bit, f16) scales actually stored.
        float d = f16ToFloat(dBits);
        float dmin = f16ToFloat(dminBits);
        for (int j = 0; j < 8; ++j) {
            int sm = scaleMinK4(y, yo + 4, j);
            float dj = d * (sm & 0xff);
            if (dj == 0f) continue;
            float dm = dmin * (sm >>> 8);
            for (int ii = 0; ii < 32; ++ii) {
                int l = nearestInt((x[xo + 32 * j + ii] + dm) / dj);
                levels[32 * j + ii] = Math.max(0, Math.min(nmax, l));
            }
        }
    }

    private static void dequantizeQ4K(MemorySegment x, long xo, float[] y, int yo) {
        float d = f16ToFloat(x.get(LE_SHORT, xo));
        float min = f16ToFloat(x.get(LE_SHORT, xo + 2));
        for (int c = 0; c < 4; c++) {
            int sm1 = scaleMinK4(x, xo + 4, 2 * c);
            int sm2 = scaleMinK4(x, xo + 4, 2 * c + 1);
            float d1 = d * (sm1 & 0xff);
            float m1 = min * (sm1 >>> 8);
            float d2 = d * (sm2 & 0xff);
            float m2 = min * (sm2 >>> 8);
            for (int l = 0; l < 32; ++l) {
                int q = x.get(ValueLayout.JAVA_BYTE, xo + 16 + 32 * c + l) & 0xff;
                y[yo + 64 * c + l] = d1 * (q & 0xF) - m1;
                y[yo + 64 * c + 32 + l] = d2 * (q >>> 4) - m2;
            }
        }
    }

    // ---------------------------------------------------------------- Q6_K

    private static void quantizeQ6K(float[] x, int xo, MemorySegment y, long yo, QuantScratch s) {
        int[] levels = s.levels;
        float[] scales = s.scales;
        float maxScale = 0;
        float maxAbsScale = 0;
        for (int ib = 0; ib < 16; ++ib) {
            float scale = makeQxQuants(16, 32, x, xo + 16 * ib, levels, 16 * ib);
            scales[ib] = scale;
            float absScale = Math.abs(scale);
            if (absScale > maxAbsScale) {
                maxAbsScale = absScale;
                maxScale = scale;
            }
        }
        if (maxAbsScale < GROUP_MAX_EPS) {
            y.asSlice(yo, 210).fill((byte) 0);
            return;
        }
        float iscale = -128.f / maxScale;
        short dBits = floatToF16(1 / iscale);
        y.set(LE_SHORT, yo + 208, dBits);
        byte[] sc = new byte[16];
        for (int ib = 0; ib < 16; ++ib) {
            sc[ib] = (byte) Math.min(127, nearestInt(iscale * scales[ib]));
        }
        MemorySegment.copy(sc, 0, y, ValueLayout.JAVA_BYTE, yo + 192, 16);

        float d0 = f16ToFloat(dBits);
        for (int j = 0; j < 16; ++j) {
            float d = d0 * sc[j];
            if (d == 0f) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearestInt(x[xo + 16 * j + ii] / d);
                l = Math.max(-32, Math.min(31, l));
                levels[16 * j + ii] = l + 32;
            }
        }
        for (int half = 0; half < 2; half++) {
            int j = 128 * half;
            long ql = yo + 64L * half;
            long qh = yo + 128 + 32L * half;
            for (int l = 0; l < 32; ++l) {
                int q1 = levels[j + l] & 0xF;
                int q2 = levels[j + l + 32] & 0xF;
                int q3 = levels[j + l + 64] & 0xF;
                int q4 = levels[j + l + 96] & 0xF;
                y.set(ValueLayout.JAVA_BYTE, ql + l, (byte) (q1 | (q3 << 4)));
                y.set(ValueLayout.JAVA_BYTE, ql + l + 32, (byte) (q2 | (q4 << 4)));
                int h = (levels[j + l] >> 4) | ((levels[j + l + 32] >> 4) << 2)
                        | ((levels[j + l + 64] >> 4) << 4) | ((levels[j + l + 96] >> 4) << 6);
                y.set(ValueLayout.JAVA_BYTE, qh + l, (byte) h);
            }
        }
    }

    /**
     * Half h (elements 128h..128h+127) uses ql bytes 64h.., qh bytes 32h.. and scales 8h..: for
     * l < 32, element l takes the low nibble of ql[l] and bits 0-1 of qh[l], element l+32 the low
     * nibble of ql[l+32] and bits 2-3, element l+64 the high nibble of ql[l] and bits 4-5, element
     * l+96 the high nibble of ql[l+32] and bits 6-7. Each run of 16 elements has its own scale.
     */
    private static void dequantizeQ6K(MemorySegment x, long xo, float[] y, int yo) {
        float d = f16ToFloat(x.get(LE_SHORT, xo + 208));
        for (int half = 0; half < 2; half++) {
            long ql = xo + 64L * half;
            long qh = xo + 128 + 32L * half;
            long sc = xo + 192 + 8L * half;
            int base = yo + 128 * half;
            for (int l = 0; l < 32; ++l) {
                int is = l / 16;
                int lo = x.get(ValueLayout.JAVA_BYTE, ql + l) & 0xff;
                int hi = x.get(ValueLayout.JAVA_BYTE, ql + l + 32) & 0xff;
                int h = x.get(ValueLayout.JAVA_BYTE, qh + l) & 0xff;
                int q1 = ((lo & 0xF) | ((h & 3) << 4)) - 32;
                int q2 = ((hi & 0xF) | (((h >> 2) & 3) << 4)) - 32;
                int q3 = ((lo >> 4) | (((h >> 4) & 3) << 4)) - 32;
                int q4 = ((hi >> 4) | (((h >> 6) & 3) << 4)) - 32;
                y[base + l] = d * x.get(ValueLayout.JAVA_BYTE, sc + is) * q1;
                y[base + l + 32] = d * x.get(ValueLayout.JAVA_BYTE, sc + is + 2) * q2;
                y[base + l + 64] = d * x.get(ValueLayout.JAVA_BYTE, sc + is + 4) * q3;
                y[base + l + 96] = d * x.get(ValueLayout.JAVA_BYTE, sc + is + 6) * q4;
            }
        }
    }

    // ---------------------------------------------------------------- Q4_1, Q5_0, Q5_1

    private static void quantizeQ4_1(float[] x, int xo, MemorySegment y, long yo) {
        float min = Float.MAX_VALUE;
        float max = -Float.MAX_VALUE;
        for (int j = 0; j < 32; j++) {
            float v = x[xo + j];
            if (v < min) min = v;
            if (v > max) max = v;
        }
        float d = (max - min) / 15;
        float id = d != 0f ? 1.0f / d : 0.0f;
        y.set(LE_SHORT, yo, floatToF16(d));
        y.set(LE_SHORT, yo + 2, floatToF16(min));
        for (int j = 0; j < 16; j++) {
            float x0 = (x[xo + j] - min) * id;
            float x1 = (x[xo + 16 + j] - min) * id;
            // (int8_t)(v + 0.5f): truncation of a non-negative value, i.e. round half up.
            int xi0 = Math.min(15, (int) (x0 + 0.5f));
            int xi1 = Math.min(15, (int) (x1 + 0.5f));
            y.set(ValueLayout.JAVA_BYTE, yo + 4 + j, (byte) (xi0 | (xi1 << 4)));
        }
    }

    private static void dequantizeQ4_1(MemorySegment x, long xo, float[] y, int yo) {
        float d = f16ToFloat(x.get(LE_SHORT, xo));
        float m = f16ToFloat(x.get(LE_SHORT, xo + 2));
        for (int j = 0; j < 16; j++) {
            int q = x.get(ValueLayout.JAVA_BYTE, xo + 4 + j) & 0xff;
            y[yo + j] = (q & 0xF) * d + m;
            y[yo + j + 16] = (q >>> 4) * d + m;
        }
    }

    private static void quantizeQ5_0(float[] x, int xo, MemorySegment y, long yo) {
        // As Q4_0: a signed scale maps the value of largest magnitude onto -16.
        float amax = 0f;
        float max = 0f;
        for (int j = 0; j < 32; j++) {
            float v = x[xo + j];
            if (amax < Math.abs(v)) {
                amax = Math.abs(v);
                max = v;
            }
        }
        float d = max / -16;
        float id = d != 0f ? 1.0f / d : 0.0f;
        y.set(LE_SHORT, yo, floatToF16(d));
        int qh = 0;
        for (int j = 0; j < 16; j++) {
            float x0 = x[xo + j] * id;
            float x1 = x[xo + 16 + j] * id;
            int xi0 = Math.min(31, (int) (x0 + 16.5f));
            int xi1 = Math.min(31, (int) (x1 + 16.5f));
            y.set(ValueLayout.JAVA_BYTE, yo + 6 + j, (byte) ((xi0 & 0xF) | ((xi1 & 0xF) << 4)));
            qh |= ((xi0 & 0x10) >>> 4) << j;
            qh |= ((xi1 & 0x10) >>> 4) << (j + 16);
        }
        y.set(LE_INT, yo + 2, qh);
    }

    private static void dequantizeQ5_0(MemorySegment x, long xo, float[] y, int yo) {
        float d = f16ToFloat(x.get(LE_SHORT, xo));
        int qh = x.get(LE_INT, xo + 2);
        for (int j = 0; j < 16; j++) {
            int q = x.get(ValueLayout.JAVA_BYTE, xo + 6 + j) & 0xff;
            int h0 = ((qh >>> j) << 4) & 0x10;
            int h1 = (qh >>> (j + 12)) & 0x10;
            y[yo + j] = (((q & 0xF) | h0) - 16) * d;
            y[yo + j + 16] = (((q >>> 4) | h1) - 16) * d;
        }
    }

    private static void quantizeQ5_1(float[] x, int xo, MemorySegment y, long yo) {
        float min = Float.MAX_VALUE;
        float max = -Float.MAX_VALUE;
        for (int j = 0; j < 32; j++) {
            float v = x[xo + j];
            if (v < min) min = v;
            if (v > max) max = v;
        }
        float d = (max - min) / 31;
        float id = d != 0f ? 1.0f / d : 0.0f;
        y.set(LE_SHORT, yo, floatToF16(d));
        y.set(LE_SHORT, yo + 2, floatToF16(min));
        int qh = 0;
        for (int j = 0; j < 16; j++) {
            float x0 = (x[xo + j] - min) * id;
            float x1 = (x[xo + 16 + j] - min) * id;
            // (uint8_t)(v + 0.5f), unclamped as in ggml
            int xi0 = (int) (x0 + 0.5f) & 0xff;
            int xi1 = (int) (x1 + 0.5f) & 0xff;
            y.set(ValueLayout.JAVA_BYTE, yo + 8 + j, (byte) ((xi0 & 0xF) | ((xi1 & 0xF) << 4)));
            qh |= ((xi0 & 0x10) >>> 4) << j;
            qh |= ((xi1 & 0x10) >>> 4) << (j + 16);
        }
        y.set(LE_INT, yo + 4, qh);
    }

    private static void dequantizeQ5_1(MemorySegment x, long xo, float[] y, int yo) {
        float d = f16ToFloat(x.get(LE_SHORT, xo));
        float m = f16ToFloat(x.get(LE_SHORT, xo + 2));
        int qh = x.get(LE_INT, xo + 4);
        for (int j = 0; j < 16; j++) {
            int q = x.get(ValueLayout.JAVA_BYTE, xo + 8 + j) & 0xff;
            int h0 = ((qh >>> j) << 4) & 0x10;
            int h1 = (qh >>> (j + 12)) & 0x10;
            y[yo + j] = ((q & 0xF) | h0) * d + m;
            y[yo + j + 16] = ((q >>> 4) | h1) * d + m;
        }
    }

    // ---------------------------------------------------------------- IQ4_NL

    /** IQ4_NL's 16 levels (ggml's kvalues_iq4nl), denser near zero; value = d · IQ4_NL_VALUES[q]. */
    public static final int[] IQ4_NL_VALUES = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

    /** ggml's best_index_int8: the index of the level nearest {@code v} (ties go up). */
    private static int bestIndexIq4Nl(float v) {
        int[] val = IQ4_NL_VALUES;
        if (v <= val[0]) return 0;
        if (v >= val[15]) return 15;
        int ml = 0;
        int mu = 15;
        while (mu - ml > 1) {
            int mav = (ml + mu) / 2;
            if (v < val[mav]) mu = mav;
            else ml = mav;
        }
        return v - val[mu - 1] < val[mu] - v ? mu - 1 : mu;
    }

    /**
     * What {@code llama-quantize} writes for IQ4_NL without an importance matrix (ggml's
     * quantize_iq4_nl → quantize_row_iq4_nl_impl with weights x² and ntry 7): a first scale
     * max/127, then 15 trial scales (itry − 127)/max, keeping the weighted least-squares best;
     * the levels are then re-chosen against that scale. (quantize_row_iq4_nl_ref runs ntry −1,
     * the first scale's fit alone, and differs.)
     */
    private static void quantizeIq4Nl(float[] x, int xo, MemorySegment y, long yo, QuantScratch s) {
        int[] val = IQ4_NL_VALUES;
        float[] weights = s.weights;
        int ntry = 7;
        float amax = 0;
        float max = 0;
        for (int j = 0; j < 32; ++j) {
            weights[j] = x[xo + j] * x[xo + j];
            float ax = Math.abs(x[xo + j]);
            if (ax > amax) {
                amax = ax;
                max = x[xo + j];
            }
        }
        float scale = 0;
        if (amax >= GROUP_MAX_EPS) {
            float d = -max / val[0];
            float id = 1 / d;
            float sumqx = 0;
            float sumq2 = 0;
            for (int j = 0; j < 32; ++j) {
                float q = val[bestIndexIq4Nl(id * x[xo + j])];
                float w = weights[j];
                sumqx += w * q * x[xo + j];
                sumq2 += w * q * q;
            }
            d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
            float best = d * sumqx;
            for (int itry = -ntry; itry <= ntry; ++itry) {
                id = (itry + val[0]) / max;
                sumqx = 0;
                sumq2 = 0;
                for (int j = 0; j < 32; ++j) {
                    float q = val[bestIndexIq4Nl(id * x[xo + j])];
                    float w = weights[j];
                    sumqx += w * q * x[xo + j];
                    sumq2 += w * q * q;
                }
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
            scale = d;
        }
        y.set(LE_SHORT, yo, floatToF16(scale));
        float id = scale != 0 ? 1 / scale : 0;
        for (int j = 0; j < 16; ++j) {
            int l0 = bestIndexIq4Nl(id * x[xo + j]);
            int l1 = bestIndexIq4Nl(id * x[xo + 16 + j]);
            y.set(ValueLayout.JAVA_BYTE, yo + 2 + j, (byte) (l0 | (l1 << 4)));
        }
    }

    private static void dequantizeIq4Nl(MemorySegment x, long xo, float[] y, int yo) {
        float d = f16ToFloat(x.get(LE_SHORT, xo));
        for (int j = 0; j < 16; j++) {
            int q = x.get(ValueLayout.JAVA_BYTE, xo + 2 + j) & 0xff;
            y[yo + j] = d * IQ4_NL_VALUES[q & 0xF];
            y[yo + j + 16] = d * IQ4_NL_VALUES[q >>> 4];
        }
    }

    // ---------------------------------------------------------------- Q2_K

    /**
     * Q2_K super-block (84 bytes): 16 scale bytes (low nibble: 4-bit scale, high nibble: 4-bit
     * min, one per run of 16), 64 bytes of 2-bit quants, f16 d, f16 dmin. Half h (elements
     * 128h..128h+127) uses quant bytes 32h..32h+31: element 128h + 32g + l (l < 32) is bits
     * 2g..2g+1 of byte 32h + l, with scale byte 8h + 2g + l/16; value = d·sc·q − dmin·m.
     */
    private static void quantizeQ2K(float[] x, int xo, MemorySegment y, long yo, QuantScratch s) {
        int[] levels = s.levels;
        float[] weights = s.weights;
        float[] scales = s.scales;
        float[] mins = s.mins;
        float maxScale = 0;
        float maxMin = 0;
        for (int j = 0; j < 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = Math.abs(x[xo + 16 * j + l]);
            scales[j] = makeQkx2Quants(16, 3, x, xo + 16 * j, weights, levels, 16 * j, s.minOut,
                    s.levelsAux, -0.5f, 0.1f, 15, true);
            mins[j] = s.minOut[0];
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }
        byte[] sc = new byte[16];
        short dBits = 0;
        short dminBits = 0;
        if (maxScale > 0) {
            float iscale = 15.f / maxScale;
            for (int j = 0; j < 16; ++j) sc[j] = (byte) nearestInt(iscale * scales[j]);
            dBits = floatToF16(maxScale / 15.f);
        }
        if (maxMin > 0) {
            float iscale = 15.f / maxMin;
            for (int j = 0; j < 16; ++j) sc[j] |= (byte) (nearestInt(iscale * mins[j]) << 4);
            dminBits = floatToF16(maxMin / 15.f);
        }
        MemorySegment.copy(sc, 0, y, ValueLayout.JAVA_BYTE, yo, 16);
        y.set(LE_SHORT, yo + 80, dBits);
        y.set(LE_SHORT, yo + 82, dminBits);
        float d0 = f16ToFloat(dBits);
        float dmin0 = f16ToFloat(dminBits);
        for (int j = 0; j < 16; ++j) {
            float d = d0 * (sc[j] & 0xF);
            if (d == 0f) continue;
            float dm = dmin0 * ((sc[j] & 0xff) >>> 4);
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearestInt((x[xo + 16 * j + ii] + dm) / d);
                levels[16 * j + ii] = Math.max(0, Math.min(3, l));
            }
        }
        packTwoBits(levels, y, yo + 16);
    }

    /** Levels 0..3 of 256 values as Q2_K and Q3_K store them: byte 32h + l holds 128h + l + 32g at bits 2g. */
    private static void packTwoBits(int[] levels, MemorySegment y, long qo) {
        for (int j = 0; j < 256; j += 128) {
            for (int l = 0; l < 32; ++l) {
                int q = levels[j + l] | (levels[j + l + 32] << 2) | (levels[j + l + 64] << 4) | (levels[j + l + 96] << 6);
                y.set(ValueLayout.JAVA_BYTE, qo + j / 4 + l, (byte) q);
            }
        }
    }

    private static void dequantizeQ2K(MemorySegment x, long xo, float[] y, int yo) {
        float d = f16ToFloat(x.get(LE_SHORT, xo + 80));
        float min = f16ToFloat(x.get(LE_SHORT, xo + 82));
        for (int h = 0; h < 2; h++) {
            for (int g = 0; g < 4; g++) {
                for (int l = 0; l < 32; l++) {
                    int sc = x.get(ValueLayout.JAVA_BYTE, xo + 8 * h + 2 * g + l / 16) & 0xff;
                    float dl = d * (sc & 0xF);
                    float ml = min * (sc >>> 4);
                    int q = ((x.get(ValueLayout.JAVA_BYTE, xo + 16 + 32 * h + l) & 0xff) >>> (2 * g)) & 3;
                    y[yo + 128 * h + 32 * g + l] = dl * q - ml;
                }
            }
        }
    }

    // ---------------------------------------------------------------- Q3_K

    /**
     * ggml's make_q3_quants with do_rmse: levels -nmax..nmax-1 from the scale -nmax/max, then up
     * to five passes that move single levels where that improves the x²-weighted fit. Levels are
     * stored offset by nmax; returns the scale.
     */
    private static float makeQ3Quants(int n, int nmax, float[] x, int xo, int[] levels, int lo) {
        float max = 0;
        float amax = 0;
        for (int i = 0; i < n; ++i) {
            float ax = Math.abs(x[xo + i]);
            if (ax > amax) {
                amax = ax;
                max = x[xo + i];
            }
        }
        if (amax < GROUP_MAX_EPS) {
            for (int i = 0; i < n; ++i) levels[lo + i] = 0;
            return 0.f;
        }
        float iscale = -nmax / max;
        float sumlx = 0;
        float suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearestInt(iscale * x[xo + i]);
            l = Math.max(-nmax, Math.min(nmax - 1, l));
            levels[lo + i] = l;
            float w = x[xo + i] * x[xo + i];
            sumlx += w * x[xo + i] * l;
            suml2 += w * l * l;
        }
        for (int itry = 0; itry < 5; ++itry) {
            int changed = 0;
            for (int i = 0; i < n; ++i) {
                float xi = x[xo + i];
                float w = xi * xi;
                int li = levels[lo + i];
                float slx = sumlx - w * xi * li;
                if (slx > 0) {
                    float sl2 = suml2 - w * li * li;
                    int newL = nearestInt(xi * sl2 / slx);
                    newL = Math.max(-nmax, Math.min(nmax - 1, newL));
                    if (newL != li) {
                        slx += w * xi * newL;
                        sl2 += w * newL * newL;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                            levels[lo + i] = newL;
                            sumlx = slx;
                            suml2 = sl2;
                            ++changed;
                        }
                    }
                }
            }
            if (changed == 0) break;
        }
        for (int i = 0; i < n; ++i) levels[lo + i] += nmax;
        return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
    }

    /** 6-bit signed scale (−32..31) of run {@code j} (0..15) of a Q3_K super-block's 12 scale bytes at {@code so}. */
    public static int scaleQ3K(MemorySegment block, long so, int j) {
        int low = j < 8 ? block.get(ValueLayout.JAVA_BYTE, so + j) & 0xF
                : (block.get(ValueLayout.JAVA_BYTE, so + j - 8) & 0xff) >>> 4;
        int high = ((block.get(ValueLayout.JAVA_BYTE, so + 8 + j % 4) & 0xff) >>> (2 * (j / 4))) & 3;
        return (low | (high << 4)) - 32;
    }

    /**
     * Q3_K super-block (110 bytes): 32 bytes hmask (the third bit), 64 bytes of 2-bit quants
     * (laid out as Q2_K's), 12 bytes of 6-bit scales (low nibbles in bytes 0-7, two bits each in
     * bytes 8-11, see {@link #scaleQ3K}), f16 d. Element 128h + 32g + l (l < 32) takes its third
     * bit from bit 4h + g of hmask[l]; value = d·(scale − 32)·(q − 4), with q's third bit set
     * meaning no −4.
     */
    private static void quantizeQ3K(float[] x, int xo, MemorySegment y, long yo, QuantScratch s) {
        int[] levels = s.levels;
        float[] scales = s.scales;
        float maxScale = 0;
        float amax = 0;
        for (int j = 0; j < 16; ++j) {
            scales[j] = makeQ3Quants(16, 4, x, xo + 16 * j, levels, 16 * j);
            float scale = Math.abs(scales[j]);
            if (scale > amax) {
                amax = scale;
                maxScale = scales[j];
            }
        }
        byte[] sc = new byte[12];
        short dBits = 0;
        if (maxScale != 0) {
            float iscale = -32.f / maxScale;
            for (int j = 0; j < 16; ++j) {
                int l = (byte) nearestInt(iscale * scales[j]);   // int8_t, as ggml stores it
                l = Math.max(-32, Math.min(31, l)) + 32;
                if (j < 8) sc[j] = (byte) (l & 0xF);
                else sc[j - 8] |= (byte) ((l & 0xF) << 4);
                l >>= 4;
                sc[j % 4 + 8] |= (byte) (l << (2 * (j / 4)));
            }
            dBits = floatToF16(1 / iscale);
        }
        MemorySegment.copy(sc, 0, y, ValueLayout.JAVA_BYTE, yo + 96, 12);
        y.set(LE_SHORT, yo + 108, dBits);
        float d0 = f16ToFloat(dBits);
        for (int j = 0; j < 16; ++j) {
            float d = d0 * scaleQ3K(y, yo + 96, j);
            if (d == 0f) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearestInt(x[xo + 16 * j + ii] / d);
                levels[16 * j + ii] = Math.max(-4, Math.min(3, l)) + 4;
            }
        }
        // The third bit goes to hmask: bit m of hmask[i] for element 32m + i.
        byte[] hmask = new byte[32];
        for (int j = 0; j < 256; ++j) {
            if (levels[j] > 3) {
                hmask[j % 32] |= (byte) (1 << (j / 32));
                levels[j] -= 4;
            }
        }
        MemorySegment.copy(hmask, 0, y, ValueLayout.JAVA_BYTE, yo, 32);
        packTwoBits(levels, y, yo + 32);
    }

    private static void dequantizeQ3K(MemorySegment x, long xo, float[] y, int yo) {
        float d = f16ToFloat(x.get(LE_SHORT, xo + 108));
        for (int h = 0; h < 2; h++) {
            for (int g = 0; g < 4; g++) {
                for (int l = 0; l < 32; l++) {
                    float dl = d * scaleQ3K(x, xo + 96, 8 * h + 2 * g + l / 16);
                    int q = ((x.get(ValueLayout.JAVA_BYTE, xo + 32 + 32 * h + l) & 0xff) >>> (2 * g)) & 3;
                    int hm = (x.get(ValueLayout.JAVA_BYTE, xo + l) >>> (4 * h + g)) & 1;
                    y[yo + 128 * h + 32 * g + l] = dl * (q - (hm != 0 ? 0 : 4));
                }
            }
        }
    }

    // ---------------------------------------------------------------- Q5_K

    /**
     * Q5_K super-block (176 bytes): f16 d, f16 dmin, 12 scale bytes as Q4_K's, 32 bytes qh, 128
     * bytes of low nibbles laid out as Q4_K's. Sub-block j (0..7) takes its fifth bit from bit j of
     * qh[l]; value = d·scale·q − dmin·min.
     */
    private static void quantizeQ5K(float[] x, int xo, MemorySegment y, long yo, QuantScratch s) {
        int[] levels = s.levels;
        quantizeScalesMinsK(x, xo, y, yo, s, 31, -0.5f, 15);
        byte[] qh = new byte[32];
        for (int c = 0; c < 4; c++) {
            for (int j = 0; j < 32; ++j) {
                int l1 = levels[64 * c + j];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] |= (byte) (1 << (2 * c));
                }
                int l2 = levels[64 * c + j + 32];
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] |= (byte) (2 << (2 * c));
                }
                y.set(ValueLayout.JAVA_BYTE, yo + 48 + 32 * c + j, (byte) (l1 | (l2 << 4)));
            }
        }
        MemorySegment.copy(qh, 0, y, ValueLayout.JAVA_BYTE, yo + 16, 32);
    }

    private static void dequantizeQ5K(MemorySegment x, long xo, float[] y, int yo) {
        float d = f16ToFloat(x.get(LE_SHORT, xo));
        float min = f16ToFloat(x.get(LE_SHORT, xo + 2));
        for (int c = 0; c < 4; c++) {
            int sm1 = scaleMinK4(x, xo + 4, 2 * c);
            int sm2 = scaleMinK4(x, xo + 4, 2 * c + 1);
            float d1 = d * (sm1 & 0xff);
            float m1 = min * (sm1 >>> 8);
            float d2 = d * (sm2 & 0xff);
            float m2 = min * (sm2 >>> 8);
            for (int l = 0; l < 32; ++l) {
                int q = x.get(ValueLayout.JAVA_BYTE, xo + 48 + 32 * c + l) & 0xff;
                int h = x.get(ValueLayout.JAVA_BYTE, xo + 16 + l) & 0xff;
                y[yo + 64 * c + l] = d1 * ((q & 0xF) + ((h >>> (2 * c)) & 1) * 16) - m1;
                y[yo + 64 * c + 32 + l] = d2 * ((q >>> 4) + ((h >>> (2 * c + 1)) & 1) * 16) - m2;
            }
        }
    }
}
