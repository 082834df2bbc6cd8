package dev.kvserve.kernels.cpu;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kernels.GgmlQuantize;
import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kernels.ScalarKernels;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.nativ.cpu.CpuKernels;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every op of {@link CpuBackend} against {@link ScalarKernels} on seeded random data: the Vector API
 * kernels, and the int8 kernels of {@link CpuKernels} for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K and Q6_K where they load.
 */
class CpuBackendTest {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;

    /** The default backend: int8 kernels for Q8_0 and Q4_0 where the library loads. */
    private static CpuBackend backend;
    /** Vector API kernels only. */
    private static CpuBackend vectorBackend;
    private static Arena arena;

    @BeforeAll
    static void open() {
        backend = new CpuBackend(2);
        vectorBackend = new CpuBackend(2, false);
        arena = Arena.ofShared();
    }

    @AfterAll
    static void close() {
        backend.close();
        vectorBackend.close();
        arena.close();
    }

    /** What {@code b.matmul} must compute: with int8 activations where {@code b} quantizes them. */
    private static void reference(CpuBackend b, WeightTensor w, MemorySegment x, MemorySegment out, int batch) {
        if (b.quantizesActivations(w.type())) ScalarKernels.matmulQuantizedActivations(w, x, out, batch);
        else ScalarKernels.matmul(w, x, out, batch);
    }

    private static float[] gaussian(Random rnd, int n, float scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) rnd.nextGaussian() * scale;
        return a;
    }

    private MemorySegment floats(float[] values) {
        MemorySegment s = backend.allocate((long) values.length * Float.BYTES);
        MemorySegment.copy(values, 0, s, F32, 0, values.length);
        return s;
    }

    private static MemorySegment copyOf(MemorySegment s) {
        MemorySegment c = arena.allocate(s.byteSize(), 64);
        c.copyFrom(s);
        return c;
    }

    static Stream<Arguments> matmulCases() {
        // cols: K-quants need multiples of 256, Q8_0/Q4_0 of 32 (odd block counts run the paired-
        // block loops' tails); float types get odd lengths so the vector tails run. Batches cover
        // the four-row tiles and each remainder.
        Stream.Builder<Arguments> cases = Stream.builder();
        for (GgmlType type : new GgmlType[] {GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0,
                GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
                GgmlType.IQ4_NL, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q5_K}) {
            int[] colChoices = switch (type) {
                case Q2_K, Q3_K, Q4_K, Q5_K, Q6_K -> new int[] {256, 768};
                // 576 = 18 blocks: a row of SmolLM2-135M, where Q4_K_M falls back to Q5_0 (and
                // the block-32 tile kernels' partial last tile of 64 values)
                case Q4_1, Q5_0, Q5_1, IQ4_NL -> new int[] {32, 96, 576};
                case Q8_0, Q4_0 -> new int[] {32, 96, 544};
                default -> new int[] {7, 37, 515};
            };
            for (int cols : colChoices) {
                // 19 rows: four-row tiles, a pair and a single row in the tiled path
                for (int rows : new int[] {1, 19}) {
                    for (int batch : new int[] {1, 3, 4, 5, 9, 17}) addCases(cases, type, cols, rows, batch);
                }
            }
            // Long rows; and a matrix large enough to be split over both threads.
            addCases(cases, type, 2048, 9, 1);
            addCases(cases, type, 2048, 9, 5);
            addCases(cases, type, type.blockSize == 256 ? 512 : 544, 300, 6);
            addCases(cases, type, type.blockSize == 256 ? 512 : 544, 301, 17);
        }
        return cases.build();
    }

    /**
     * Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 on both kernel sets; every other type has only the Vector API
     * ones. "uploaded": through {@link CpuBackend#upload} first, which repacks the int8 kernels' types
     * by eight rows.
     */
    private static void addCases(Stream.Builder<Arguments> cases, GgmlType type, int cols, int rows, int batch) {
        cases.add(Arguments.of(type, cols, rows, batch, "vector"));
        if (type == GgmlType.Q8_0 || type == GgmlType.Q4_0 || type == GgmlType.Q4_1 || type == GgmlType.Q5_0
                || type == GgmlType.Q5_1 || type == GgmlType.Q4_K || type == GgmlType.Q6_K) {
            // int8 kernels: as given (plain kernel) and uploaded (repacked by eight rows; 19, 9, 301
            // rows leave 3, 1, 5 rows to the plain kernel; Q4_K and Q6_K are not repacked and stay plain)
            cases.add(Arguments.of(type, cols, rows, batch, "default"));
            cases.add(Arguments.of(type, cols, rows, batch, "uploaded"));
        } else if (type.blockSize > 1 && type != GgmlType.Q4_K && type != GgmlType.Q6_K) {
            // the types added with the Q4_K_M/Q5_K_M fallbacks: also through upload and the default backend
            cases.add(Arguments.of(type, cols, rows, batch, "uploaded"));
        }
    }

    @ParameterizedTest(name = "{0} cols={1} rows={2} batch={3} {4}")
    @MethodSource("matmulCases")
    void matmulMatchesScalarReference(GgmlType type, int cols, int rows, int batch, String kernels) {
        CpuBackend backend = kernels.equals("vector") ? vectorBackend : CpuBackendTest.backend;
        Random rnd = new Random(31L * cols + 7L * rows + batch + type.ordinal() * 1000L);
        float[] weights = gaussian(rnd, cols * rows, 0.05f);
        MemorySegment data = GgmlQuantize.quantize(type, weights, cols, arena);
        WeightTensor w = new WeightTensor("w", type, new long[] {cols, rows}, data);
        if (kernels.equals("uploaded")) w = backend.upload(w);
        float[] x = gaussian(rnd, cols * batch, 1f);
        MemorySegment xs = floats(x);
        MemorySegment out = backend.allocate((long) rows * batch * Float.BYTES);
        backend.matmul(w, xs, out, batch);

        MemorySegment expected = arena.allocate((long) rows * batch * Float.BYTES);
        reference(backend, w, xs, expected, batch);
        float[] row = new float[cols];
        for (int r = 0; r < rows; r++) {
            GgmlQuantize.dequantizeRow(type, data, r * w.rowBytes(), row, 0, cols);
            for (int b = 0; b < batch; b++) {
                // Bound relative to Σ|w·x|: float sums in another order differ by a few ulps of that.
                double magnitude = 0;
                for (int c = 0; c < cols; c++) magnitude += Math.abs((double) row[c] * x[b * cols + c]);
                float got = out.getAtIndex(F32, (long) b * rows + r);
                float want = expected.getAtIndex(F32, (long) b * rows + r);
                assertThat((double) Math.abs(got - want))
                        .as("row %d batch row %d: got %s want %s", r, b, got, want)
                        .isLessThanOrEqualTo(2e-6 * magnitude + 1e-30);
            }
        }
    }

    /** Each instruction set the library has and this CPU runs (AVX2 everywhere it loads, then AVX-512 VNNI). */
    @ParameterizedTest
    @CsvSource({"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q6_K"})
    void int8KernelsMatchTheirReferenceOnEveryInstructionSet(GgmlType type) {
        CpuKernels.Probe probe = CpuKernels.probe();
        Assumptions.assumeTrue(probe.available(), () -> "int8 kernels unavailable: " + probe.description());
        CpuKernels k = probe.kernels();
        int best = k.isa();
        try {
            for (int isa = CpuKernels.ISA_AVX2; isa <= best; isa++) {
                assertThat(k.limitIsa(isa)).isEqualTo(isa);
                for (int batch : new int[] {1, 2, 7}) {
                    Random rnd = new Random(isa * 100 + batch);
                    int cols = type.blockSize == 256 ? 768 : 800, rows = 67;
                    WeightTensor w = new WeightTensor("w", type, new long[] {cols, rows},
                            GgmlQuantize.quantize(type, gaussian(rnd, cols * rows, 0.05f), cols, arena));
                    MemorySegment x = floats(gaussian(rnd, cols * batch, 1f));
                    MemorySegment expected = arena.allocate((long) rows * batch * Float.BYTES);
                    ScalarKernels.matmulQuantizedActivations(w, x, expected, batch);
                    // as given, and uploaded (repacked by eight rows; 67 rows leave three plain)
                    for (WeightTensor t : new WeightTensor[] {w, backend.upload(w)}) {
                        MemorySegment out = backend.allocate((long) rows * batch * Float.BYTES);
                        backend.matmul(t, x, out, batch);
                        for (int i = 0; i < rows * batch; i++) {
                            assertThat(out.getAtIndex(F32, i)).as("%s batch %d output %d", CpuKernels.isaName(isa), batch, i)
                                    .isCloseTo(expected.getAtIndex(F32, i), org.assertj.core.data.Offset.offset(1e-5f));
                        }
                    }
                }
            }
        } finally {
            k.limitIsa(Integer.MAX_VALUE);
        }
        assertThat(k.isa()).isEqualTo(best);
    }

    /**
     * Quantizing the activations costs at most half a quant step per value: |Σ w·(x − x̂)| ≤
     * Σ_blocks Σ|w| · d/2, plus the scale's fp16 rounding (2⁻¹¹ relative) and float sums. Blocks of
     * 256 for Q4_K and Q6_K (ggml's q8_K: d = max|x|/127 as a float).
     */
    @ParameterizedTest
    @CsvSource({"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q6_K"})
    void int8ActivationsStayWithinTheirQuantizationErrorOfTheFloatResult(GgmlType type) {
        Assumptions.assumeTrue(backend.quantizesActivations(type), "int8 kernels unavailable: " + CpuKernels.probe().description());
        Random rnd = new Random(17);
        int cols = 1024, rows = 33;
        MemorySegment data = GgmlQuantize.quantize(type, gaussian(rnd, cols * rows, 0.05f), cols, arena);
        WeightTensor w = new WeightTensor("w", type, new long[] {cols, rows}, data);
        float[] x = gaussian(rnd, cols, 1f);
        MemorySegment out = backend.allocate((long) rows * Float.BYTES);
        backend.matmul(w, floats(x), out, 1);
        float[] row = new float[cols];
        for (int r = 0; r < rows; r++) {
            GgmlQuantize.dequantizeRow(type, data, r * w.rowBytes(), row, 0, cols);
            double exact = 0, bound = 0, magnitude = 0;
            int block = type.blockSize == 256 ? 256 : 32;   // q8_K activations for Q4_K, Q6_K
            for (int k = 0; k < cols / block; k++) {
                double amax = 0, absW = 0;
                for (int j = block * k; j < block * k + block; j++) {
                    exact += (double) row[j] * x[j];
                    magnitude += Math.abs((double) row[j] * x[j]);
                    amax = Math.max(amax, Math.abs(x[j]));
                    absW += Math.abs(row[j]);
                }
                bound += absW * amax / 127 / 2;
            }
            bound += magnitude * (Math.scalb(1.0, -11) + 1e-5);
            assertThat(Math.abs(out.getAtIndex(F32, r) - exact)).as("row %d", r).isLessThanOrEqualTo(bound);
            assertThat(bound).as("the bound is tight enough to mean something").isLessThan(0.05 * magnitude);
        }
    }

    @ParameterizedTest
    @CsvSource({"F32, 37", "F16, 37", "BF16, 37", "Q8_0, 96", "Q4_0, 96", "Q4_K, 512", "Q6_K, 512", "Q4_1, 96",
        "Q5_0, 576", "Q5_1, 96", "IQ4_NL, 96", "Q2_K, 512", "Q3_K, 512", "Q5_K, 512"})
    void decodeRowMatchesTheScalarDecoder(GgmlType type, int cols) {
        float[] values = gaussian(new Random(type.ordinal() + 99), 3 * cols, 0.1f);
        MemorySegment data = GgmlQuantize.quantize(type, values, cols, arena);
        float[] want = new float[cols];
        float[] got = new float[cols];
        for (int r = 0; r < 3; r++) {
            GgmlQuantize.dequantizeRow(type, data, r * type.bytesFor(cols), want, 0, cols);
            WeightKernel.of(type).decodeRow(data, r * type.bytesFor(cols), got, cols);
            for (int c = 0; c < cols; c++) {
                assertThat(got[c]).as("row %d col %d", r, c).isCloseTo(want[c], org.assertj.core.data.Offset.offset(1e-6f * Math.abs(want[c]) + 1e-9f));
            }
        }
    }

    /** The warm-up matrix of each type is whole blocks, and its matmuls run (once per JVM per type). */
    @Test
    void warmUpRunsForEveryTypeAddedForTheKQuantFallbacks() {
        GgmlType[] types = {GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.IQ4_NL, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q5_K};
        CpuBackend.warmUp(types);
        for (GgmlType type : types) {
            int cols = type.blockSize == 256 ? 512 : 544;
            float[] weights = gaussian(new Random(type.ordinal() + 5), cols * 21, 0.05f);
            WeightTensor w = backend.upload(new WeightTensor("w", type, new long[] {cols, 21}, GgmlQuantize.quantize(type, weights, cols, arena)));
            assertMatmulMatchesReference(w, 5, 79, 1e-3f);
        }
    }

    @Test
    void uploadWarmsUpOnTheWeightItselfAndLeavesItAndTheResultsUnchanged(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
            throws java.io.IOException {
        // A weight large enough for upload's warm-up, memory-mapped as the model files are.
        int cols = 1024, rows = (int) (CpuBackend.WARMUP_MIN_ELEMENTS / cols);
        float[] weights = gaussian(new Random(77), cols * rows, 0.05f);
        MemorySegment quantized = GgmlQuantize.quantize(GgmlType.Q8_0, weights, cols, arena);
        try (Arena mapping = Arena.ofShared()) {
            WeightTensor w = backend.upload(new WeightTensor("ffn", GgmlType.Q8_0, new long[] {cols, rows},
                    mapFile(dir, quantized, mapping)));
            assertThat(w.data().mismatch(quantized)).isEqualTo(-1);
            assertMatmulMatchesReference(w, 3, 78, 1e-3f);
        }
    }

    /** {@code bytes} written to a file in {@code dir} and mapped read-only, as model files are. */
    private static MemorySegment mapFile(java.nio.file.Path dir, MemorySegment bytes, Arena mapping) throws java.io.IOException {
        java.nio.file.Path file = java.nio.file.Files.createTempFile(dir, "weights", ".bin");
        java.nio.file.Files.write(file, bytes.toArray(ValueLayout.JAVA_BYTE));
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(file)) {
            return ch.map(java.nio.channels.FileChannel.MapMode.READ_ONLY, 0, bytes.byteSize(), mapping);
        }
    }

    /** {@code backend.matmul(w)} against its reference on seeded random activations. */
    private void assertMatmulMatchesReference(WeightTensor w, int batch, long seed, float tolerance) {
        MemorySegment x = floats(gaussian(new Random(seed), w.cols() * batch, 1f));
        MemorySegment out = backend.allocate((long) w.rows() * batch * Float.BYTES);
        MemorySegment expected = arena.allocate((long) w.rows() * batch * Float.BYTES);
        backend.matmul(w, x, out, batch);
        reference(backend, w, x, expected, batch);
        for (long i = 0; i < (long) w.rows() * batch; i++) {
            assertThat(out.getAtIndex(F32, i)).as("output %d", i)
                    .isCloseTo(expected.getAtIndex(F32, i), org.assertj.core.data.Offset.offset(tolerance));
        }
    }

    /** A mapped Q4_0 weight: repacked at upload, its mapping unloaded, yet still read right by embed and matmul. */
    @Test
    void uploadRepacksAMappedQ4_0WeightAndTheOriginalStaysReadable(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
            throws java.io.IOException {
        int cols = 256, rows = 8 * 12 + 5;
        MemorySegment quantized = GgmlQuantize.quantize(GgmlType.Q4_0, gaussian(new Random(91), cols * rows, 0.05f), cols, arena);
        try (Arena mapping = Arena.ofShared()) {
            WeightTensor w = backend.upload(new WeightTensor("token_embd.weight", GgmlType.Q4_0, new long[] {cols, rows},
                    mapFile(dir, quantized, mapping)));
            assertThat(w.data().mismatch(quantized)).isEqualTo(-1);
            assertMatmulMatchesReference(w, 2, 92, 1e-5f);
            MemorySegment row = backend.allocate((long) cols * Float.BYTES);
            backend.embed(w, new int[] {rows - 1}, row);
            float[] want = new float[cols];
            GgmlQuantize.dequantizeRow(GgmlType.Q4_0, quantized, (rows - 1) * w.rowBytes(), want, 0, cols);
            for (int c = 0; c < cols; c++) assertThat(row.getAtIndex(F32, c)).isEqualTo(want[c]);
        }
    }

    @Test
    void matmulMayWriteOverItsInput() {
        Random rnd = new Random(5);
        int n = 256;
        float[] weights = gaussian(rnd, n * n, 0.05f);
        WeightTensor w = new WeightTensor("square", GgmlType.Q8_0, new long[] {n, n},
                GgmlQuantize.quantize(GgmlType.Q8_0, weights, n, arena));
        MemorySegment x = floats(gaussian(rnd, n * 3, 1f));
        MemorySegment expected = arena.allocate((long) n * 3 * Float.BYTES);
        reference(backend, w, x, expected, 3);
        backend.matmul(w, x, x, 3);
        for (int i = 0; i < n * 3; i++) {
            assertThat(x.getAtIndex(F32, i)).isCloseTo(expected.getAtIndex(F32, i), org.assertj.core.data.Offset.offset(1e-4f));
        }
    }

    @ParameterizedTest
    @CsvSource({"64, 1", "100, 3", "2048, 5", "7, 2"})
    void rmsnormMatchesReference(int dim, int batch) {
        Random rnd = new Random(dim + batch);
        MemorySegment x = floats(gaussian(rnd, dim * batch, 3f));
        WeightTensor weight = new WeightTensor("norm", GgmlType.F32, new long[] {dim}, floats(gaussian(rnd, dim, 1f)));
        MemorySegment expected = copyOf(x);
        ScalarKernels.rmsnorm(expected, expected, weight.data(), dim, batch, 1e-5f);
        MemorySegment out = backend.allocate((long) dim * batch * Float.BYTES);
        backend.rmsnorm(out, x, weight, dim, batch, 1e-5f);
        assertClose(out, expected, dim * batch, 1e-6, 1e-6);
        backend.rmsnorm(x, x, weight, dim, batch, 1e-5f); // in place
        assertClose(x, expected, dim * batch, 1e-6, 1e-6);
    }

    @ParameterizedTest
    @CsvSource({"5, 1", "512, 2", "2049, 3", "33, 4"})
    void softmaxMatchesReference(int dim, int batch) {
        Random rnd = new Random(dim * 3L + batch);
        MemorySegment x = floats(gaussian(rnd, dim * batch, 8f));
        MemorySegment expected = copyOf(x);
        ScalarKernels.softmax(expected, dim, batch);
        backend.softmax(x, dim, batch);
        assertClose(x, expected, dim * batch, 1e-5, 1e-9);
        for (int b = 0; b < batch; b++) {
            double sum = 0;
            for (int i = 0; i < dim; i++) sum += x.getAtIndex(F32, (long) b * dim + i);
            assertThat(sum).isCloseTo(1.0, org.assertj.core.data.Offset.offset(1e-5));
        }
    }

    @ParameterizedTest
    @CsvSource({"172, 1", "8192, 2", "13, 3"})
    void siluMulMatchesReference(int dim, int batch) {
        Random rnd = new Random(dim + 11L * batch);
        MemorySegment gate = floats(gaussian(rnd, dim * batch, 4f));
        MemorySegment up = floats(gaussian(rnd, dim * batch, 1f));
        MemorySegment expected = copyOf(gate);
        ScalarKernels.siluMul(expected, up, dim, batch);
        backend.siluMul(gate, up, dim, batch);
        assertClose(gate, expected, dim * batch, 1e-5, 1e-7);
    }

    @Test
    void addAndAddBiasMatchReference() {
        Random rnd = new Random(3);
        int dim = 77;
        int batch = 3;
        MemorySegment acc = floats(gaussian(rnd, dim * batch, 1f));
        MemorySegment x = floats(gaussian(rnd, dim * batch, 1f));
        MemorySegment expected = copyOf(acc);
        ScalarKernels.add(expected, x, (long) dim * batch);
        backend.add(acc, x, (long) dim * batch);
        assertClose(acc, expected, dim * batch, 0, 0);

        WeightTensor bias = new WeightTensor("bias", GgmlType.F32, new long[] {dim}, floats(gaussian(rnd, dim, 1f)));
        ScalarKernels.addBias(expected, bias.data(), dim, batch);
        backend.addBias(acc, bias, dim, batch);
        assertClose(acc, expected, dim * batch, 0, 0);
    }

    @ParameterizedTest
    @CsvSource({
        "8, 8, false, 10000", "8, 8, true, 10000", "64, 64, false, 500000",
        "128, 64, true, 1000000", "16, 16, true, 10000"})
    void ropeMatchesReference(int headDim, int ropeDims, boolean neox, float base) {
        Random rnd = new Random(headDim + ropeDims);
        int heads = 3;
        int batch = 4;
        RopeConfig rope = new RopeConfig(ropeDims, base, 1f, neox);
        int[] positions = {0, 1, 255, 4097};
        MemorySegment x = floats(gaussian(rnd, heads * headDim * batch, 1f));
        MemorySegment expected = copyOf(x);
        ScalarKernels.rope(expected, positions, heads, headDim, rope, batch);
        backend.rope(x, positions, heads, headDim, rope, batch);
        assertClose(x, expected, heads * headDim * batch, 1e-6, 1e-6);
    }

    @Test
    void ropeAppliesLlama3FrequencyFactors() {
        float[] factors = {1f, 2f, 4f, 8f, 16f, 32f, 64f, 128f};
        RopeConfig rope = new RopeConfig(16, 500000f, 1f, false, factors);
        int[] positions = {3, 700};
        MemorySegment x = floats(gaussian(new Random(9), 2 * 2 * 16, 1f));
        MemorySegment expected = copyOf(x);
        ScalarKernels.rope(expected, positions, 2, 16, rope, 2);
        backend.rope(x, positions, 2, 16, rope, 2);
        assertClose(x, expected, 2 * 2 * 16, 1e-6, 1e-6);
        // An equal config in a new instance (its own array) must give the same rotation.
        MemorySegment y = copyOf(expected);
        MemorySegment z = copyOf(expected);
        backend.rope(y, positions, 2, 16, new RopeConfig(16, 500000f, 1f, false, factors.clone()), 2);
        ScalarKernels.rope(z, positions, 2, 16, rope, 2);
        assertClose(y, z, 2 * 2 * 16, 1e-6, 1e-6);
    }

    @Test
    void ropeAtPositionZeroIsIdentityAndScalesPositions() {
        RopeConfig scaled = new RopeConfig(8, 10000f, 0.5f, false);
        RopeConfig plain = new RopeConfig(8, 10000f, 1f, false);
        float[] values = gaussian(new Random(1), 8, 1f);
        MemorySegment a = floats(values);
        MemorySegment b = floats(values);
        backend.rope(a, new int[] {10}, 1, 8, scaled, 1);
        backend.rope(b, new int[] {5}, 1, 8, plain, 1);
        assertClose(a, b, 8, 1e-6, 1e-7);
        MemorySegment c = floats(values);
        backend.rope(c, new int[] {0}, 1, 8, plain, 1);
        for (int i = 0; i < 8; i++) assertThat(c.getAtIndex(F32, i)).isEqualTo(values[i]);
    }

    @ParameterizedTest
    @CsvSource({"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "Q2_K", "Q3_K", "Q5_K"})
    void embedDecodesTheTokenRows(GgmlType type) {
        int cols = 256;
        int rows = 10;
        float[] values = gaussian(new Random(type.ordinal()), cols * rows, 0.1f);
        WeightTensor table = new WeightTensor("emb", type, new long[] {cols, rows}, GgmlQuantize.quantize(type, values, cols, arena));
        int[] tokens = {3, 0, 9, 3};
        MemorySegment out = backend.allocate((long) cols * tokens.length * Float.BYTES);
        backend.embed(table, tokens, out);
        MemorySegment expected = arena.allocate((long) cols * tokens.length * Float.BYTES);
        ScalarKernels.embed(table, tokens, expected);
        assertClose(out, expected, cols * tokens.length, 0, 0);
    }

    @Test
    void allocationsAreZeroedAndAligned() {
        MemorySegment s = backend.allocate(1000);
        assertThat(s.byteSize()).isEqualTo(1000);
        assertThat(s.address() % 64).isZero();
        for (int i = 0; i < 1000; i++) assertThat(s.get(ValueLayout.JAVA_BYTE, i)).isZero();
    }

    @Test
    void badArgumentsAreRefusedWithClearMessages() {
        WeightTensor w = new WeightTensor("blk.0.attn_q.weight", GgmlType.Q8_0, new long[] {64, 4},
                GgmlQuantize.quantize(GgmlType.Q8_0, new float[256], 64, arena));
        MemorySegment small = backend.allocate(16);
        MemorySegment out = backend.allocate(1024);
        assertThatThrownBy(() -> backend.matmul(w, small, out, 1))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("blk.0.attn_q.weight");
        assertThatThrownBy(() -> backend.matmul(w, out, out, 0)).isInstanceOf(IllegalArgumentException.class);
        WeightTensor iq4xs = new WeightTensor("odd", GgmlType.IQ4_XS, new long[] {256, 1}, arena.allocate(136));
        assertThatThrownBy(() -> backend.matmul(iq4xs, out, out, 1))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("IQ4_XS");
        WeightTensor truncated = new WeightTensor("cut", GgmlType.Q8_0, new long[] {64, 4}, arena.allocate(100));
        assertThatThrownBy(() -> backend.matmul(truncated, out, out, 1))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("cut");
        assertThatThrownBy(() -> backend.embed(w, new int[] {4}, out))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("token id 4");
        assertThatThrownBy(() -> backend.rope(out, new int[] {0}, 1, 8, new RopeConfig(16, 1e4f, 1f, false), 1))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("rope dims");
        assertThatThrownBy(() -> backend.rmsnorm(out, out, w, 64, 1, 1e-5f))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("F32");
    }

    @Test
    void closedBackendRefusesWork() {
        CpuBackend b = new CpuBackend(2);
        MemorySegment s = b.allocate(64);
        b.close();
        b.close(); // idempotent
        assertThatThrownBy(() -> b.softmax(s, 4, 1)).isInstanceOf(IllegalStateException.class);
    }

    private static void assertClose(MemorySegment got, MemorySegment want, int n, double rel, double abs) {
        for (int i = 0; i < n; i++) {
            float g = got.getAtIndex(F32, i);
            float e = want.getAtIndex(F32, i);
            assertThat((double) Math.abs(g - e)).as("index %d: got %s want %s", i, g, e)
                    .isLessThanOrEqualTo(rel * Math.abs(e) + abs);
        }
    }
}
