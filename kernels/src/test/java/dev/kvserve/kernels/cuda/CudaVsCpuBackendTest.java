package dev.kvserve.kernels.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.data.Offset.offset;

import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.kernels.cpu.CpuBackend;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The same sequence of Backend calls (a small Llama-style block: embed, rmsnorm, q/k/v and MLP
 * matmuls, RoPE, SiLU-mul, residual adds, bias, softmax) on the CPU backend and on the CUDA one,
 * step by step. Agreement here is what lets the decoder swap backends. Tolerance: 2e-4 relative to
 * the magnitude of each value (fp32 sums in different orders, fp16/quantized weights identical).
 */
class CudaVsCpuBackendTest {

    @AfterAll
    static void close() {
        TestDevices.closeAll();
    }

    static Stream<Arguments> cases() {
        return TestDevices.names().flatMap(d -> Stream.of(GgmlType.F32, GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_K,
                GgmlType.Q6_K).map(t -> Arguments.of(d, t)));
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void blockOfOpsAgreesWithTheCpuBackend(String device, GgmlType type) {
        CudaBackend gpu = TestDevices.backend(device);
        Random rnd = new Random(101 + type.id);
        int dim = 256, hidden = 512, heads = 4, headDim = 64, vocab = 40, batch = 3;
        // shared: the CPU backend's worker threads read the weights. Vector API kernels only: like
        // the CUDA kernels they keep the activations in float (the int8 ones quantize them).
        try (Arena arena = Arena.ofShared(); CpuBackend cpu = new CpuBackend(2, false)) {
            WeightTensor emb = GgmlTestData.randomTensor("emb", type, dim, vocab, rnd, arena);
            WeightTensor wq = GgmlTestData.randomTensor("wq", type, dim, dim, rnd, arena);
            WeightTensor up = GgmlTestData.randomTensor("up", type, dim, hidden, rnd, arena);
            WeightTensor gate = GgmlTestData.randomTensor("gate", type, dim, hidden, rnd, arena);
            WeightTensor down = GgmlTestData.randomTensor("down", type, hidden, dim, rnd, arena);
            WeightTensor norm = f32("norm", rnd, dim, arena), bias = f32("bias", rnd, dim, arena);
            int[] tokens = {5, 39, 0};
            int[] positions = {7, 8, 300};
            RopeConfig rope = new RopeConfig(headDim, 10000f, 1f, true);

            Pair p = new Pair(cpu, gpu);
            Pair.Tensor w = p.upload(emb, wq, up, gate, down, norm, bias);
            MemorySegment[] x = p.alloc(4L * batch * dim), h = p.alloc(4L * batch * dim), q = p.alloc(4L * batch * dim);
            MemorySegment[] a = p.alloc(4L * batch * hidden), g = p.alloc(4L * batch * hidden);
            for (int i = 0; i < 2; i++) p.at(i).embed(w.get(i, 0), tokens, x[i]);
            p.check("embed", x, batch * dim);
            for (int i = 0; i < 2; i++) p.at(i).rmsnorm(h[i], x[i], w.get(i, 5), dim, batch, 1e-5f);
            p.check("rmsnorm", h, batch * dim);
            for (int i = 0; i < 2; i++) p.at(i).matmul(w.get(i, 1), h[i], q[i], batch);
            p.check("matmul q", q, batch * dim);
            for (int i = 0; i < 2; i++) p.at(i).rope(q[i], positions, heads, headDim, rope, batch);
            p.check("rope", q, batch * dim);
            for (int i = 0; i < 2; i++) {
                p.at(i).matmul(w.get(i, 2), h[i], a[i], batch);
                p.at(i).matmul(w.get(i, 3), h[i], g[i], batch);
                p.at(i).siluMul(g[i], a[i], hidden, batch);
            }
            p.check("siluMul", g, batch * hidden);
            for (int i = 0; i < 2; i++) {
                p.at(i).matmul(w.get(i, 4), g[i], h[i], batch);
                p.at(i).add(x[i], h[i], (long) batch * dim);
                p.at(i).addBias(x[i], w.get(i, 6), dim, batch);
            }
            p.check("down + residual + bias", x, batch * dim);
            for (int i = 0; i < 2; i++) p.at(i).softmax(x[i], dim, batch);
            p.check("softmax", x, batch * dim);
        }
    }

    private static WeightTensor f32(String name, Random rnd, int n, Arena arena) {
        MemorySegment s = arena.allocate(4L * n, 16);
        for (int i = 0; i < n; i++) s.setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) rnd.nextGaussian());
        return new WeightTensor(name, GgmlType.F32, new long[] {n}, s);
    }

    /** The two backends side by side; index 0 is the CPU, 1 the CUDA backend. */
    private record Pair(Backend cpu, Backend gpu) {

        Backend at(int i) {
            return i == 0 ? cpu : gpu;
        }

        record Tensor(WeightTensor[][] t) {
            WeightTensor get(int backend, int k) {
                return t[backend][k];
            }
        }

        Tensor upload(WeightTensor... host) {
            WeightTensor[][] t = new WeightTensor[2][host.length];
            for (int i = 0; i < 2; i++) for (int k = 0; k < host.length; k++) t[i][k] = at(i).upload(host[k]);
            return new Tensor(t);
        }

        MemorySegment[] alloc(long bytes) {
            return new MemorySegment[] {cpu.allocate(bytes), gpu.allocate(bytes)};
        }

        void check(String step, MemorySegment[] buf, int n) {
            float[] c = new float[n], g = new float[n];
            cpu.copyToHost(buf[0], MemorySegment.ofArray(c));
            gpu.copyToHost(buf[1], MemorySegment.ofArray(g));
            for (int i = 0; i < n; i++) {
                assertThat(g[i]).as("%s value %d", step, i).isCloseTo(c[i], offset(2e-4f * (1 + Math.abs(c[i]))));
            }
        }
    }
}
