package dev.kvserve.kernels.kv;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class KvKernelsTest {

    @ParameterizedTest
    @ValueSource(ints = {1, 7, 8, 16, 33, 64, 128, 200})
    void simdMatchesScalar(int n) {
        Random rnd = new Random(n);
        float[] a = new float[n + 3], b = new float[n + 5];
        for (int i = 0; i < a.length; i++) a[i] = (float) rnd.nextGaussian();
        for (int i = 0; i < b.length; i++) b[i] = (float) rnd.nextGaussian();
        assertThat(KvKernels.dot(a, 3, b, 5, n)).isCloseTo(KvKernels.dotScalar(a, 3, b, 5, n), within(1e-4f * n));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(4L * (n + 2));
            MemorySegment.copy(a, 0, seg, ValueLayout.JAVA_FLOAT_UNALIGNED, 8, n);
            assertThat(KvKernels.dot(seg, 8, b, 1, n)).isCloseTo(KvKernels.dotScalar(seg, 8, b, 1, n), within(1e-4f * n));
            float[] y1 = b.clone(), y2 = b.clone();
            KvKernels.axpy(0.37f, seg, 8, y1, 2, n);
            KvKernels.axpyScalar(0.37f, seg, 8, y2, 2, n);
            for (int i = 0; i < y1.length; i++) assertThat(y1[i]).isCloseTo(y2[i], within(1e-5f));
            float[] z1 = b.clone(), z2 = b.clone();
            KvKernels.axpy(-1.5f, a, 1, z1, 0, n);
            KvKernels.axpyScalar(-1.5f, a, 1, z2, 0, n);
            for (int i = 0; i < z1.length; i++) assertThat(z1[i]).isCloseTo(z2[i], within(1e-5f));
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 4, 8})
    void quantizeRoundTripsWithinHalfAStepAndPackingIsLossless(int bits) {
        Random rnd = new Random(bits);
        int n = 32, levels = (1 << bits) - 1;
        try (Arena arena = Arena.ofConfined()) {
            for (int trial = 0; trial < 50; trial++) {
                float[] x = new float[n];
                double shift = rnd.nextGaussian() * 100;
                for (int i = 0; i < n; i++) x[i] = (float) (shift + rnd.nextGaussian() * (trial % 3 == 0 ? 1e-3 : 3));
                if (trial == 7) java.util.Arrays.fill(x, 1.25f);
                int[] codes = new int[n];
                int params = KvKernels.quantizeGroup(x, 0, 1, n, bits, codes, 0);
                MemorySegment seg = arena.allocate(n);
                KvKernels.pack(codes, 0, n, bits, seg, 0);
                float[] fast = new float[n], slow = new float[n];
                KvKernels.dequantize(seg, 0, n, bits, KvKernels.scaleOf(params), KvKernels.minOf(params), fast, 0);
                KvKernels.dequantizeScalar(seg, 0, n, bits, KvKernels.scaleOf(params), KvKernels.minOf(params), slow, 0);
                assertThat(fast).containsExactly(slow);
                float lo = Float.MAX_VALUE, hi = -Float.MAX_VALUE;
                for (float v : x) {
                    lo = Math.min(lo, v);
                    hi = Math.max(hi, v);
                }
                float scale = KvKernels.scaleOf(params);
                assertThat(KvKernels.minOf(params)).isLessThanOrEqualTo(lo);
                assertThat(KvKernels.minOf(params) + levels * scale).isGreaterThanOrEqualTo(hi);
                for (int i = 0; i < n; i++) {
                    assertThat(codes[i]).isBetween(0, levels);
                    assertThat(KvKernels.code(seg, 0, i, bits)).isEqualTo(codes[i]);
                    assertThat(Math.abs(fast[i] - x[i])).isLessThanOrEqualTo(scale * 0.5f * 1.0001f + Math.ulp(x[i]) * 4);
                }
                KvKernels.setCode(seg, 0, 5, bits, levels);
                assertThat(KvKernels.code(seg, 0, 5, bits)).isEqualTo(levels);
                assertThat(KvKernels.code(seg, 0, 4, bits)).isEqualTo(codes[4]);
                assertThat(KvKernels.code(seg, 0, 6, bits)).isEqualTo(codes[6]);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {3, 16})
    void halfConversionRoundsToNearest(int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = 1f / (i + 3) - i;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(2L * n);
            KvKernels.f32ToF16(x, 0, seg, 0, n);
            float[] y = new float[n];
            KvKernels.f16ToF32(seg, 0, y, 0, n);
            for (int i = 0; i < n; i++) {
                assertThat(y[i]).isEqualTo(KvKernels.roundToF16(x[i]));
                assertThat(Math.abs(y[i] - x[i])).isLessThanOrEqualTo(Math.abs(x[i]) / 2048f);
            }
        }
    }
}
