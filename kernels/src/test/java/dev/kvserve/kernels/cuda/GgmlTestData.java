package dev.kvserve.kernels.cuda;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;

/**
 * Random but valid weight rows in ggml's block layouts, and their dequantization written from
 * ggml's dequantize_row_* (independently of the CUDA code), for kernel-vs-reference tests.
 */
final class GgmlTestData {

    private GgmlTestData() {}

    private static short half(float f) {
        return Float.floatToFloat16(f);
    }

    private static float f16(MemorySegment s, long offset) {
        return Float.float16ToFloat(s.get(ValueLayout.JAVA_SHORT_UNALIGNED, offset));
    }

    /** A host tensor of {@code rows} rows of {@code cols} random values in {@code type}. */
    static WeightTensor randomTensor(String name, GgmlType type, int cols, int rows, Random rnd, Arena arena) {
        long rowBytes = type.bytesFor(cols);
        MemorySegment data = arena.allocate(rowBytes * rows, 16);
        for (int r = 0; r < rows; r++) {
            MemorySegment row = data.asSlice(r * rowBytes, rowBytes);
            switch (type) {
                case F32 -> { for (int c = 0; c < cols; c++) row.setAtIndex(ValueLayout.JAVA_FLOAT, c, (float) rnd.nextGaussian()); }
                case F16 -> { for (int c = 0; c < cols; c++) row.setAtIndex(ValueLayout.JAVA_SHORT, c, half((float) rnd.nextGaussian())); }
                case BF16 -> {
                    for (int c = 0; c < cols; c++) {
                        int bits = Float.floatToRawIntBits((float) rnd.nextGaussian());
                        row.setAtIndex(ValueLayout.JAVA_SHORT, c, (short) (bits >>> 16));
                    }
                }
                case Q4_0, Q8_0, Q4_K, Q6_K -> randomBlocks(type, row, cols / type.blockSize, rnd);
                default -> throw new IllegalArgumentException(type.toString());
            }
        }
        return new WeightTensor(name, type, new long[] {cols, rows}, data);
    }

    private static void randomBlocks(GgmlType type, MemorySegment row, int blocks, Random rnd) {
        for (int b = 0; b < blocks; b++) {
            MemorySegment blk = row.asSlice((long) b * type.blockBytes, type.blockBytes);
            for (long i = 0; i < type.blockBytes; i++) blk.set(ValueLayout.JAVA_BYTE, i, (byte) rnd.nextInt(256));
            float sign = rnd.nextBoolean() ? 1f : -1f;
            switch (type) {
                case Q4_0, Q8_0 -> blk.set(ValueLayout.JAVA_SHORT_UNALIGNED, 0, half(sign * (0.002f + 0.05f * rnd.nextFloat())));
                case Q4_K -> {
                    blk.set(ValueLayout.JAVA_SHORT_UNALIGNED, 0, half(0.001f + 0.01f * rnd.nextFloat()));
                    blk.set(ValueLayout.JAVA_SHORT_UNALIGNED, 2, half(0.001f + 0.01f * rnd.nextFloat()));
                }
                case Q6_K -> blk.set(ValueLayout.JAVA_SHORT_UNALIGNED, 208, half(sign * (0.0005f + 0.002f * rnd.nextFloat())));
                default -> throw new IllegalArgumentException(type.toString());
            }
        }
    }

    /** Row {@code r} of a host tensor as floats, following ggml's dequantize_row_* loops. */
    static float[] dequantizeRow(WeightTensor w, int r) {
        int cols = w.cols();
        MemorySegment row = w.data().asSlice(r * w.rowBytes(), w.rowBytes());
        float[] y = new float[cols];
        switch (w.type()) {
            case F32 -> { for (int c = 0; c < cols; c++) y[c] = row.getAtIndex(ValueLayout.JAVA_FLOAT, c); }
            case F16 -> { for (int c = 0; c < cols; c++) y[c] = Float.float16ToFloat(row.getAtIndex(ValueLayout.JAVA_SHORT, c)); }
            case BF16 -> {
                for (int c = 0; c < cols; c++) y[c] = Float.intBitsToFloat((row.getAtIndex(ValueLayout.JAVA_SHORT, c) & 0xFFFF) << 16);
            }
            case Q4_0 -> {
                for (int b = 0; b < cols / 32; b++) {
                    long o = b * 18L;
                    float d = f16(row, o);
                    for (int j = 0; j < 16; j++) {
                        int q = row.get(ValueLayout.JAVA_BYTE, o + 2 + j) & 0xFF;
                        y[b * 32 + j] = ((q & 0xF) - 8) * d;
                        y[b * 32 + j + 16] = ((q >> 4) - 8) * d;
                    }
                }
            }
            case Q8_0 -> {
                for (int b = 0; b < cols / 32; b++) {
                    long o = b * 34L;
                    float d = f16(row, o);
                    for (int j = 0; j < 32; j++) y[b * 32 + j] = row.get(ValueLayout.JAVA_BYTE, o + 2 + j) * d;
                }
            }
            case Q4_K -> {
                for (int b = 0; b < cols / 256; b++) {
                    long o = b * 144L;
                    float d = f16(row, o), dmin = f16(row, o + 2);
                    int[] sc = new int[12];
                    for (int i = 0; i < 12; i++) sc[i] = row.get(ValueLayout.JAVA_BYTE, o + 4 + i) & 0xFF;
                    int yi = b * 256;
                    for (int j = 0; j < 4; j++) {   // 64 values per step: two sub-blocks sharing 32 bytes
                        int[] s1 = scaleMin(2 * j, sc), s2 = scaleMin(2 * j + 1, sc);
                        float d1 = d * s1[0], m1 = dmin * s1[1], d2 = d * s2[0], m2 = dmin * s2[1];
                        for (int l = 0; l < 32; l++) {
                            int q = row.get(ValueLayout.JAVA_BYTE, o + 16 + 32L * j + l) & 0xFF;
                            y[yi + 64 * j + l] = d1 * (q & 0xF) - m1;
                            y[yi + 64 * j + 32 + l] = d2 * (q >> 4) - m2;
                        }
                    }
                }
            }
            case Q6_K -> {
                for (int b = 0; b < cols / 256; b++) {
                    long o = b * 210L;
                    float d = f16(row, o + 208);
                    for (int n = 0; n < 2; n++) {   // two halves of 128
                        long ql = o + 64L * n, qh = o + 128 + 32L * n, sc = o + 192 + 8L * n;
                        for (int l = 0; l < 32; l++) {
                            int is = l / 16;
                            int qlA = row.get(ValueLayout.JAVA_BYTE, ql + l) & 0xFF;
                            int qlB = row.get(ValueLayout.JAVA_BYTE, ql + l + 32) & 0xFF;
                            int h = row.get(ValueLayout.JAVA_BYTE, qh + l) & 0xFF;
                            int q1 = ((qlA & 0xF) | ((h & 3) << 4)) - 32;
                            int q2 = ((qlB & 0xF) | (((h >> 2) & 3) << 4)) - 32;
                            int q3 = ((qlA >> 4) | (((h >> 4) & 3) << 4)) - 32;
                            int q4 = ((qlB >> 4) | (((h >> 6) & 3) << 4)) - 32;
                            int base = b * 256 + 128 * n;
                            y[base + l] = d * row.get(ValueLayout.JAVA_BYTE, sc + is) * q1;
                            y[base + l + 32] = d * row.get(ValueLayout.JAVA_BYTE, sc + is + 2) * q2;
                            y[base + l + 64] = d * row.get(ValueLayout.JAVA_BYTE, sc + is + 4) * q3;
                            y[base + l + 96] = d * row.get(ValueLayout.JAVA_BYTE, sc + is + 6) * q4;
                        }
                    }
                }
            }
            default -> throw new IllegalArgumentException(w.type().toString());
        }
        return y;
    }

    /** ggml's get_scale_min_k4: {scale, min} of sub-block j from the 12 packed bytes. */
    private static int[] scaleMin(int j, int[] q) {
        if (j < 4) return new int[] {q[j] & 63, q[j + 4] & 63};
        return new int[] {(q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)};
    }
}
