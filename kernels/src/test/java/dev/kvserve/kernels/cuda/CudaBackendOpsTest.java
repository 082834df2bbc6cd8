package dev.kvserve.kernels.cuda;

import static dev.kvserve.kernels.cuda.DeviceBuffers.floats;
import static dev.kvserve.kernels.cuda.DeviceBuffers.gaussian;
import static dev.kvserve.kernels.cuda.DeviceBuffers.readFloats;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kernels.WeightTensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The decoder op set on the device against scalar references computed here in double precision.
 * Runs on a GPU ("cuda") and on the CPU emulation of the same kernels ("emulator"); each skips with
 * its reason where it does not exist.
 */
class CudaBackendOpsTest {

    @AfterAll
    static void close() {
        TestDevices.closeAll();
    }

    static Stream<String> devices() {
        return TestDevices.names();
    }

    static Stream<Arguments> matmulCases() {
        List<Arguments> cases = new ArrayList<>();
        for (String device : TestDevices.names().toList()) {
            for (GgmlType t : List.of(GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q8_0,
                    GgmlType.Q4_K, GgmlType.Q6_K)) {
                boolean kQuant = t.blockSize == 256;
                boolean floatType = t.blockSize == 1;
                // odd column counts exercise the partial 8-value group of float rows; 40 rows leave
                // the last matvec block and matmat tile partly empty
                int cols = kQuant ? 512 : floatType ? 100 : 96;
                for (int batch : new int[] {1, 5, 8, 9, 70}) cases.add(Arguments.of(device, t, cols, 40, batch));
            }
        }
        return cases.stream();
    }

    /**
     * Tolerance: fp32 accumulation in another order than the double reference; bounded by a few
     * ulps of the sum of |w·x| terms.
     */
    @ParameterizedTest(name = "{0} {1} cols={2} rows={3} batch={4}")
    @MethodSource("matmulCases")
    void matmulMatchesDequantizedReference(String device, GgmlType type, int cols, int rows, int batch) {
        CudaBackend b = TestDevices.backend(device);
        Random rnd = new Random(31L * type.id + batch);
        try (Arena arena = Arena.ofConfined()) {
            WeightTensor host = GgmlTestData.randomTensor("w", type, cols, rows, rnd, arena);
            float[] x = gaussian(rnd, batch * cols, 1f);
            WeightTensor w = b.upload(host);
            MemorySegment dx = floats(b, x), dout = b.allocate(4L * batch * rows);
            b.matmul(w, dx, dout, batch);
            float[] got = readFloats(b, dout, batch * rows);
            for (int r = 0; r < rows; r++) {
                float[] wr = GgmlTestData.dequantizeRow(host, r);
                for (int bi = 0; bi < batch; bi++) {
                    double sum = 0, abs = 0;
                    for (int c = 0; c < cols; c++) {
                        double p = (double) wr[c] * x[bi * cols + c];
                        sum += p;
                        abs += Math.abs(p);
                    }
                    assertThat((double) got[bi * rows + r]).as("row %d batch %d", r, bi)
                            .isCloseTo(sum, org.assertj.core.data.Offset.offset(1e-5 * abs + 1e-6));
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("devices")
    void embedGathersAndDequantizesRows(String device) {
        CudaBackend b = TestDevices.backend(device);
        Random rnd = new Random(7);
        try (Arena arena = Arena.ofConfined()) {
            for (GgmlType type : Kernels.WEIGHT_SUFFIX.keySet()) {
                int cols = type.blockSize == 256 ? 256 : type.blockSize == 32 ? 64 : 36;
                WeightTensor host = GgmlTestData.randomTensor("emb", type, cols, 50, rnd, arena);
                WeightTensor table = b.upload(host);
                int[] tokens = {3, 49, 0, 3, 17};
                MemorySegment out = b.allocate(4L * tokens.length * cols);
                b.embed(table, tokens, out);
                float[] got = readFloats(b, out, tokens.length * cols);
                for (int i = 0; i < tokens.length; i++) {
                    float[] want = GgmlTestData.dequantizeRow(host, tokens[i]);
                    for (int c = 0; c < cols; c++) {
                        // dequantization is a product or a product minus a product: exact, or fused
                        // on the GPU (one rounding less)
                        assertThat(got[i * cols + c]).as("%s token %d col %d", type, tokens[i], c)
                                .isCloseTo(want[c], org.assertj.core.data.Offset.offset(1e-6f * (1 + Math.abs(want[c]))));
                    }
                }
                assertThatThrownBy(() -> b.embed(table, new int[] {50}, out))
                        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("token id 50");
            }
        }
    }

    @ParameterizedTest
    @MethodSource("devices")
    void rmsnormInPlaceAndOutOfPlace(String device) {
        CudaBackend b = TestDevices.backend(device);
        Random rnd = new Random(11);
        int dim = 300, batch = 3;
        float eps = 1e-5f;
        float[] x = gaussian(rnd, dim * batch, 2f), w = gaussian(rnd, dim, 1f);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment wh = arena.allocate(4L * dim);
            MemorySegment.copy(w, 0, wh, java.lang.foreign.ValueLayout.JAVA_FLOAT, 0, dim);
            WeightTensor weight = b.upload(new WeightTensor("norm", GgmlType.F32, new long[] {dim}, wh));
            MemorySegment dx = floats(b, x), dout = b.allocate(4L * dim * batch);
            b.rmsnorm(dout, dx, weight, dim, batch, eps);
            b.rmsnorm(dx, dx, weight, dim, batch, eps);
            float[] out = readFloats(b, dout, dim * batch), inPlace = readFloats(b, dx, dim * batch);
            for (int r = 0; r < batch; r++) {
                double ss = 0;
                for (int i = 0; i < dim; i++) ss += (double) x[r * dim + i] * x[r * dim + i];
                double scale = 1 / Math.sqrt(ss / dim + eps);
                for (int i = 0; i < dim; i++) {
                    double want = x[r * dim + i] * scale * w[i];
                    assertThat((double) out[r * dim + i]).isCloseTo(want, org.assertj.core.data.Offset.offset(1e-5 * (1 + Math.abs(want))));
                    assertThat(inPlace[r * dim + i]).isEqualTo(out[r * dim + i]);
                }
            }
        }
    }

    static Stream<Arguments> ropeCases() {
        List<Arguments> cases = new ArrayList<>();
        for (String d : TestDevices.names().toList()) {
            cases.add(Arguments.of(d, new RopeConfig(64, 10000f, 1f, false)));
            cases.add(Arguments.of(d, new RopeConfig(64, 500000f, 1f, true)));
            cases.add(Arguments.of(d, new RopeConfig(32, 10000f, 0.25f, true)));   // partial rotation, scaled
        }
        return cases.stream();
    }

    /** Angles are double on both sides; the rotation itself is fp32 (tolerance a few ulps). */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("ropeCases")
    void ropeRotatesPairsAtEachRowsPosition(String device, RopeConfig rope) {
        CudaBackend b = TestDevices.backend(device);
        Random rnd = new Random(5);
        int heads = 3, headDim = 64, batch = 4;
        int[] positions = {0, 1, 4097, 131_071};
        float[] x = gaussian(rnd, batch * heads * headDim, 1f);
        MemorySegment dx = floats(b, x);
        b.rope(dx, positions, heads, headDim, rope, batch);
        float[] got = readFloats(b, dx, x.length);
        float[] want = x.clone();
        int half = rope.dims() / 2;
        for (int r = 0; r < batch; r++) {
            for (int h = 0; h < heads; h++) {
                int base = (r * heads + h) * headDim;
                for (int i = 0; i < half; i++) {
                    double theta = rope.theta(positions[r], i);
                    float c = (float) Math.cos(theta), s = (float) Math.sin(theta);
                    int i0 = base + (rope.neox() ? i : 2 * i), i1 = base + (rope.neox() ? i + half : 2 * i + 1);
                    want[i0] = x[i0] * c - x[i1] * s;
                    want[i1] = x[i0] * s + x[i1] * c;
                }
            }
        }
        for (int i = 0; i < x.length; i++) {
            assertThat(got[i]).as("value %d", i).isCloseTo(want[i], org.assertj.core.data.Offset.offset(1e-5f));
        }
        assertThatThrownBy(() -> b.rope(dx, new int[] {1}, heads, headDim, rope, batch))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("positions");
    }

    @ParameterizedTest
    @MethodSource("devices")
    void elementwiseOps(String device) {
        CudaBackend b = TestDevices.backend(device);
        Random rnd = new Random(13);
        int dim = 257, batch = 3, n = dim * batch;
        float[] gate = gaussian(rnd, n, 3f), up = gaussian(rnd, n, 1f), bias = gaussian(rnd, dim, 1f);
        MemorySegment dg = floats(b, gate), du = floats(b, up);
        b.siluMul(dg, du, dim, batch);
        float[] silu = readFloats(b, dg, n);
        for (int i = 0; i < n; i++) {
            double want = gate[i] / (1 + Math.exp(-gate[i])) * up[i];
            assertThat((double) silu[i]).isCloseTo(want, org.assertj.core.data.Offset.offset(1e-5 * (1 + Math.abs(want))));
        }
        b.add(dg, du, n);
        float[] added = readFloats(b, dg, n);
        for (int i = 0; i < n; i++) assertThat(added[i]).isEqualTo(silu[i] + up[i]);

        try (Arena arena = Arena.ofConfined()) {
            MemorySegment bh = arena.allocate(4L * dim);
            MemorySegment.copy(bias, 0, bh, java.lang.foreign.ValueLayout.JAVA_FLOAT, 0, dim);
            WeightTensor bt = b.upload(new WeightTensor("bias", GgmlType.F32, new long[] {dim}, bh));
            b.addBias(du, bt, dim, batch);
            float[] biased = readFloats(b, du, n);
            for (int i = 0; i < n; i++) assertThat(biased[i]).isEqualTo(up[i] + bias[i % dim]);
        }
    }

    @ParameterizedTest
    @MethodSource("devices")
    void softmaxRows(String device) {
        CudaBackend b = TestDevices.backend(device);
        Random rnd = new Random(17);
        int dim = 1000, batch = 2;
        float[] x = gaussian(rnd, dim * batch, 10f);
        x[5] = 80f;   // large logits must not overflow
        MemorySegment dx = floats(b, x);
        b.softmax(dx, dim, batch);
        float[] got = readFloats(b, dx, x.length);
        for (int r = 0; r < batch; r++) {
            double m = Double.NEGATIVE_INFINITY, s = 0;
            for (int i = 0; i < dim; i++) m = Math.max(m, x[r * dim + i]);
            for (int i = 0; i < dim; i++) s += Math.exp(x[r * dim + i] - m);
            for (int i = 0; i < dim; i++) {
                double want = Math.exp(x[r * dim + i] - m) / s;
                assertThat((double) got[r * dim + i]).isCloseTo(want, org.assertj.core.data.Offset.offset(1e-6 + 1e-5 * want));
            }
        }
    }

    @ParameterizedTest
    @MethodSource("devices")
    void argmaxAndTopKFollowValueThenIndexOrder(String device) {
        CudaBackend b = TestDevices.backend(device);
        Random rnd = new Random(19);
        int n = 5000, rows = 3, k = 40;
        float[] x = new float[n * rows];
        for (int i = 0; i < x.length; i++) x[i] = rnd.nextInt(200) / 8f;   // many ties
        x[1 * n + 7] = Float.NaN;
        x[1 * n + 4000] = Float.POSITIVE_INFINITY;
        x[2 * n + 3] = Float.NaN;
        MemorySegment dx = floats(b, x);
        int[] am = b.argmax(dx, n, rows);
        CudaBackend.TopK top = b.topK(dx, n, k, rows);
        for (int r = 0; r < rows; r++) {
            final int row = r;
            Integer[] order = new Integer[n];
            for (int i = 0; i < n; i++) order[i] = i;
            List<Integer> valid = Arrays.stream(order).filter(i -> !Float.isNaN(x[row * n + i])).toList();
            List<Integer> sorted = valid.stream().sorted(Comparator.<Integer>comparingDouble(i -> -x[row * n + i])
                    .thenComparingInt(i -> i)).toList();
            assertThat(am[r]).isEqualTo(sorted.get(0));
            for (int i = 0; i < k; i++) {
                assertThat(top.index(r, i)).as("row %d rank %d", r, i).isEqualTo(sorted.get(i));
                assertThat(top.value(r, i)).isEqualTo(x[r * n + sorted.get(i)]);
            }
        }
        // fewer valid entries than k: the tail is -1 / -inf
        float[] small = {1f, Float.NaN, 3f};
        CudaBackend.TopK t = b.topK(floats(b, small), 3, 3, 1);
        assertThat(t.indices()).containsExactly(2, 0, -1);
        assertThat(t.values()[2]).isEqualTo(Float.NEGATIVE_INFINITY);
    }

    @ParameterizedTest
    @MethodSource("devices")
    void badBuffersAreRefusedBeforeAnyLaunch(String device) {
        CudaBackend b = TestDevices.backend(device);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment host = arena.allocate(4096);
            MemorySegment dev = b.allocate(64);
            assertThatThrownBy(() -> b.add(host, dev, 16)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("not device memory");
            assertThatThrownBy(() -> b.add(dev, dev, 17)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("needs 68");
            assertThatThrownBy(() -> b.add(dev.asSlice(2, 32), dev, 8)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("not aligned");
            // types with CPU kernels only are refused at upload, by name, never miscomputed
            for (GgmlType t : new GgmlType[] {GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.IQ4_NL,
                    GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q5_K}) {
                WeightTensor cpuOnly = new WeightTensor("w", t, new long[] {t.blockSize, 1}, arena.allocate(t.blockBytes));
                assertThatThrownBy(() -> b.upload(cpuOnly)).isInstanceOf(IllegalArgumentException.class)
                        .hasMessageContaining("no kernels for " + t).hasMessageContaining("--backend cpu");
            }
            WeightTensor hostWeight = GgmlTestData.randomTensor("h", GgmlType.F32, 8, 2, new Random(1), arena);
            assertThatThrownBy(() -> b.matmul(hostWeight, dev, dev, 1)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("matmul weight h");
        }
    }
}
