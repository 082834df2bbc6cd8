package dev.kvserve.kernels.kv;

import dev.kvserve.kernels.LaneSum;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Small vector kernels the KV cache codecs and paged attention are built from: dot products and
 * axpy over float rows that live in Java arrays or in pool memory, fp16 conversion, and asymmetric
 * uniform quantization of a group with packed 2/4/8-bit codes. Each SIMD method has a scalar twin
 * ({@code ...Scalar}) that tests compare it with. Pool memory is little-endian.
 */
public final class KvKernels {

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED;
    static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED;

    private KvKernels() {}

    // ------------------------------------------------------------------ dot products

    /** Σ a[aOff+i]·b[bOff+i], i < n. */
    public static float dot(float[] a, int aOff, float[] b, int bOff, int n) {
        int i = 0;
        int bound = F.loopBound(n);
        FloatVector acc = FloatVector.zero(F);
        for (; i < bound; i += F.length()) {
            acc = FloatVector.fromArray(F, a, aOff + i).fma(FloatVector.fromArray(F, b, bOff + i), acc);
        }
        float s = LaneSum.sum(acc);
        for (; i < n; i++) s += a[aOff + i] * b[bOff + i];
        return s;
    }

    public static float dotScalar(float[] a, int aOff, float[] b, int bOff, int n) {
        float s = 0f;
        for (int i = 0; i < n; i++) s += a[aOff + i] * b[bOff + i];
        return s;
    }

    /** Σ x[i]·q[qOff+i] where x is n little-endian floats at byte {@code off} of {@code seg}. */
    public static float dot(MemorySegment seg, long off, float[] q, int qOff, int n) {
        int i = 0;
        int bound = F.loopBound(n);
        FloatVector acc = FloatVector.zero(F);
        for (; i < bound; i += F.length()) {
            acc = FloatVector.fromMemorySegment(F, seg, off + 4L * i, LE).fma(FloatVector.fromArray(F, q, qOff + i), acc);
        }
        float s = LaneSum.sum(acc);
        for (; i < n; i++) s += seg.get(FLOAT, off + 4L * i) * q[qOff + i];
        return s;
    }

    public static float dotScalar(MemorySegment seg, long off, float[] q, int qOff, int n) {
        float s = 0f;
        for (int i = 0; i < n; i++) s += seg.get(FLOAT, off + 4L * i) * q[qOff + i];
        return s;
    }

    // ------------------------------------------------------------------ axpy

    /** y[yOff+i] += a·x[xOff+i], i < n. */
    public static void axpy(float a, float[] x, int xOff, float[] y, int yOff, int n) {
        int i = 0;
        int bound = F.loopBound(n);
        FloatVector av = FloatVector.broadcast(F, a);
        for (; i < bound; i += F.length()) {
            FloatVector.fromArray(F, x, xOff + i).fma(av, FloatVector.fromArray(F, y, yOff + i)).intoArray(y, yOff + i);
        }
        for (; i < n; i++) y[yOff + i] += a * x[xOff + i];
    }

    public static void axpyScalar(float a, float[] x, int xOff, float[] y, int yOff, int n) {
        for (int i = 0; i < n; i++) y[yOff + i] += a * x[xOff + i];
    }

    /** y[yOff+i] += a·x[i] where x is n little-endian floats at byte {@code off} of {@code seg}. */
    public static void axpy(float a, MemorySegment seg, long off, float[] y, int yOff, int n) {
        int i = 0;
        int bound = F.loopBound(n);
        FloatVector av = FloatVector.broadcast(F, a);
        for (; i < bound; i += F.length()) {
            FloatVector.fromMemorySegment(F, seg, off + 4L * i, LE).fma(av, FloatVector.fromArray(F, y, yOff + i)).intoArray(y, yOff + i);
        }
        for (; i < n; i++) y[yOff + i] += a * seg.get(FLOAT, off + 4L * i);
    }

    public static void axpyScalar(float a, MemorySegment seg, long off, float[] y, int yOff, int n) {
        for (int i = 0; i < n; i++) y[yOff + i] += a * seg.get(FLOAT, off + 4L * i);
    }

    /** y[off+i] *= a, i < n. */
    public static void scale(float[] y, int off, int n, float a) {
        int i = 0;
        int bound = F.loopBound(n);
        for (; i < bound; i += F.length()) FloatVector.fromArray(F, y, off + i).mul(a).intoArray(y, off + i);
        for (; i < n; i++) y[off + i] *= a;
    }

    /**
     * Online-softmax step over one block of scores: given the running max {@code m} and the new
     * scores s[off..off+n) (masked entries are -inf), returns the new max; the caller rescales.
     */
    public static float max(float[] s, int off, int n, float m) {
        int i = 0;
        int bound = F.loopBound(n);
        if (bound > 0) {
            FloatVector acc = FloatVector.broadcast(F, m);
            for (; i < bound; i += F.length()) acc = acc.max(FloatVector.fromArray(F, s, off + i));
            m = acc.reduceLanes(VectorOperators.MAX);
        }
        for (; i < n; i++) m = Math.max(m, s[off + i]);
        return m;
    }

    /** s[off+i] = exp(s[off+i] - m) (exactly 0 for -inf), returns their sum. */
    public static float expShift(float[] s, int off, int n, float m) {
        float sum = 0f;
        for (int i = 0; i < n; i++) {
            float v = s[off + i];
            float e = v == Float.NEGATIVE_INFINITY ? 0f : (float) Math.exp(v - m);
            s[off + i] = e;
            sum += e;
        }
        return sum;
    }

    // ------------------------------------------------------------------ fp16

    /** n halfs at byte {@code off} of {@code seg} → dst[dOff..]. */
    public static void f16ToF32(MemorySegment seg, long off, float[] dst, int dOff, int n) {
        for (int i = 0; i < n; i++) dst[dOff + i] = Float.float16ToFloat(seg.get(SHORT, off + 2L * i));
    }

    /** src[sOff..sOff+n) → n halfs at byte {@code off} of {@code seg} (round to nearest even). */
    public static void f32ToF16(float[] src, int sOff, MemorySegment seg, long off, int n) {
        for (int i = 0; i < n; i++) seg.set(SHORT, off + 2L * i, Float.floatToFloat16(src[sOff + i]));
    }

    public static float roundToF16(float x) {
        return Float.float16ToFloat(Float.floatToFloat16(x));
    }

    // ------------------------------------------------------------------ asymmetric uniform quantization

    /** Bytes of {@code n} packed codes of {@code bits} (2, 4 or 8; n·bits a multiple of 8). */
    public static int packedBytes(int n, int bits) {
        return n * bits / 8;
    }

    /**
     * Quantizes x[xOff + i·stride], i < n, to {@code bits}-bit codes with min/max scaling:
     * {@code x ≈ min + code·scale}, {@code scale = (max - min) / (2^bits - 1)}. Scale and min are
     * rounded to fp16 first (they are stored as fp16) and codes are computed from the rounded values,
     * so decoding reproduces the nearest representable level. Codes go to {@code codes[cOff + i]}.
     * Returns {scale, min} as fp16 bit patterns packed: (scaleBits << 16) | minBits.
     */
    public static int quantizeGroup(float[] x, int xOff, int stride, int n, int bits, int[] codes, int cOff) {
        float lo = Float.POSITIVE_INFINITY, hi = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            float v = x[xOff + i * stride];
            lo = Math.min(lo, v);
            hi = Math.max(hi, v);
        }
        int levels = (1 << bits) - 1;
        short minBits = Float.floatToFloat16(lo);
        float min = Float.float16ToFloat(minBits);
        if (min > lo) {
            // fp16 rounding moved min above the true minimum: one fp16 step down keeps codes >= 0
            minBits = f16NextDown(minBits);
            min = Float.float16ToFloat(minBits);
        }
        short scaleBits = Float.floatToFloat16((hi - min) / levels);
        float scale = Float.float16ToFloat(scaleBits);
        // the top level must reach max, else the largest values (often the outliers that matter) clip
        while (min + levels * scale < hi && scaleBits < 0x7BFF) {
            scaleBits++;
            scale = Float.float16ToFloat(scaleBits);
        }
        float inv = scale > 0f ? 1f / scale : 0f;
        for (int i = 0; i < n; i++) {
            int c = Math.round((x[xOff + i * stride] - min) * inv);
            codes[cOff + i] = Math.max(0, Math.min(levels, c));
        }
        return ((scaleBits & 0xFFFF) << 16) | (minBits & 0xFFFF);
    }

    /** The next fp16 value below {@code bits} (finite inputs). */
    static short f16NextDown(short bits) {
        int b = bits & 0xFFFF;
        if (b == 0) return (short) 0x8001;
        if ((b & 0x8000) == 0) return (short) (b - 1);
        return (short) (b + 1);
    }

    public static float scaleOf(int packedParams) {
        return Float.float16ToFloat((short) (packedParams >>> 16));
    }

    public static float minOf(int packedParams) {
        return Float.float16ToFloat((short) packedParams);
    }

    /** Packs codes[cOff..cOff+n) of {@code bits} into {@code seg} at byte {@code off}, low bits first. */
    public static void pack(int[] codes, int cOff, int n, int bits, MemorySegment seg, long off) {
        if (bits == 8) {
            for (int i = 0; i < n; i++) seg.set(ValueLayout.JAVA_BYTE, off + i, (byte) codes[cOff + i]);
            return;
        }
        int perByte = 8 / bits;
        for (int b = 0; b < n / perByte; b++) {
            int v = 0;
            for (int j = 0; j < perByte; j++) v |= codes[cOff + b * perByte + j] << (j * bits);
            seg.set(ValueLayout.JAVA_BYTE, off + b, (byte) v);
        }
    }

    /** Unpacks n codes of {@code bits} at byte {@code off} and writes min + code·scale to dst[dOff..]. */
    public static void dequantize(MemorySegment seg, long off, int n, int bits, float scale, float min, float[] dst, int dOff) {
        unpack(seg, off, n, bits, dst, dOff);
        for (int i = 0; i < n; i++) dst[dOff + i] = min + dst[dOff + i] * scale;
    }

    private static final ThreadLocal<byte[]> BYTES = ThreadLocal.withInitial(() -> new byte[256]);

    /** Unpacks n codes of {@code bits} at byte {@code off} into dst[dOff..] as floats (0 .. 2^bits-1). */
    public static void unpack(MemorySegment seg, long off, int n, int bits, float[] dst, int dOff) {
        int nb = n * bits / 8;
        byte[] raw = BYTES.get();
        if (raw.length < nb) {
            raw = new byte[nb];
            BYTES.set(raw);
        }
        MemorySegment.copy(seg, ValueLayout.JAVA_BYTE, off, raw, 0, nb);
        switch (bits) {
            case 8 -> {
                for (int i = 0; i < n; i++) dst[dOff + i] = raw[i] & 0xFF;
            }
            case 4 -> {
                for (int b = 0; b < nb; b++) {
                    int v = raw[b] & 0xFF;
                    dst[dOff + 2 * b] = v & 15;
                    dst[dOff + 2 * b + 1] = v >>> 4;
                }
            }
            case 2 -> {
                for (int b = 0; b < nb; b++) {
                    int v = raw[b] & 0xFF;
                    int o = dOff + 4 * b;
                    dst[o] = v & 3;
                    dst[o + 1] = (v >>> 2) & 3;
                    dst[o + 2] = (v >>> 4) & 3;
                    dst[o + 3] = v >>> 6;
                }
            }
            default -> {
                int perByte = 8 / bits, mask = (1 << bits) - 1;
                for (int b = 0; b < nb; b++) {
                    int v = raw[b] & 0xFF;
                    for (int j = 0; j < perByte; j++) dst[dOff + b * perByte + j] = (v >>> (j * bits)) & mask;
                }
            }
        }
    }

    /** Scalar reference of {@link #dequantize}: one code at a time. */
    public static void dequantizeScalar(MemorySegment seg, long off, int n, int bits, float scale, float min, float[] dst, int dOff) {
        for (int i = 0; i < n; i++) dst[dOff + i] = min + code(seg, off, i, bits) * scale;
    }

    /** Code {@code i} of a packed run at byte {@code off}. */
    public static int code(MemorySegment seg, long off, int i, int bits) {
        if (bits == 8) return seg.get(ValueLayout.JAVA_BYTE, off + i) & 0xFF;
        int perByte = 8 / bits;
        int v = seg.get(ValueLayout.JAVA_BYTE, off + i / perByte) & 0xFF;
        return (v >>> ((i % perByte) * bits)) & ((1 << bits) - 1);
    }

    /** Writes code {@code i} of a packed run at byte {@code off}, leaving the other codes of its byte. */
    public static void setCode(MemorySegment seg, long off, int i, int bits, int code) {
        if (bits == 8) {
            seg.set(ValueLayout.JAVA_BYTE, off + i, (byte) code);
            return;
        }
        int perByte = 8 / bits;
        long at = off + i / perByte;
        int shift = (i % perByte) * bits;
        int mask = ((1 << bits) - 1) << shift;
        int v = seg.get(ValueLayout.JAVA_BYTE, at) & 0xFF;
        seg.set(ValueLayout.JAVA_BYTE, at, (byte) ((v & ~mask) | ((code << shift) & mask)));
    }

    /** Masked-tail helper kept for codecs that vectorise over a head: lanes of the preferred species. */
    public static int lanes() {
        return F.length();
    }

    static VectorMask<Float> tail(int n) {
        return F.indexInRange(0, n);
    }
}
