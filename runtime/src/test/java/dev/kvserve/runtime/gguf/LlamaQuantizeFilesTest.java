package dev.kvserve.runtime.gguf;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kvserve.kernels.GgmlQuantize;
import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.kernels.cpu.CpuBackend;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.runtime.ModelFile;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.model.SequenceChunk;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Files written by the real {@code llama-quantize} (the llama.cpp peer build, see
 * shared/peers/llama.cpp; skipped where it is not built: set {@code KVSERVE_LLAMA_CPP_BIN} or build
 * it to /tmp/llama.cpp-peer): a SmolLM2-shaped F16 file quantized with each K preset, whose 576-wide
 * matrices fall back to block-32 types. Every tensor must load, re-encoding each one from the F16
 * values must give llama-quantize's bytes, and the model must decode close to the F16 one.
 */
class LlamaQuantizeFilesTest {

    @TempDir
    Path dir;

    private static Path quantizeBinary() {
        String env = System.getenv("KVSERVE_LLAMA_CPP_BIN");
        Path bin = Path.of(env != null ? env : "/tmp/llama.cpp-peer/bin").resolve("llama-quantize");
        Assumptions.assumeTrue(Files.isExecutable(bin), "no llama-quantize at " + bin);
        return bin;
    }

    /**
     * "smol": 576 wide (every K type falls back on most matrices); "k256": 256 wide (the K types
     * themselves, Q2_K and Q5_K included). IQ4_NL is a preset of its own.
     */
    @ParameterizedTest(name = "{0} {1}")
    @CsvSource({"smol, Q4_K_M", "smol, Q5_K_M", "smol, Q6_K", "smol, Q4_0", "smol, Q8_0", "smol, Q2_K", "smol, Q3_K_M",
        "smol, Q4_1", "smol, Q5_0", "smol, Q5_1", "smol, IQ4_NL",
        "k256, Q2_K", "k256, Q3_K_S", "k256, Q4_K_S", "k256, Q5_K_S", "k256, Q5_K_M", "k256, Q6_K", "k256, IQ4_NL"})
    void everyTensorLoadsReEncodesByteForByteAndTheModelDecodes(String shape, String preset) throws Exception {
        Path bin = quantizeBinary();
        Path f16 = dir.resolve("f16.gguf");
        Path quantized = dir.resolve(preset + ".gguf");
        SyntheticModels.write(f16, shape.equals("smol") ? SyntheticWeightTypesTest.SMOL : SyntheticWeightTypesTest.K256, GgmlType.F16, 21);
        Process p = new ProcessBuilder(bin.toString(), f16.toString(), quantized.toString(), preset, "1")
                .redirectErrorStream(true).redirectOutput(dir.resolve("quantize.log").toFile()).start();
        assertThat(p.waitFor(300, TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).as(Files.readString(dir.resolve("quantize.log"))).isZero();

        Set<GgmlType> seen = EnumSet.noneOf(GgmlType.class);
        TreeMap<String, String> mismatches = new TreeMap<>();
        try (ModelFile source = ModelFile.open(f16); ModelFile q = ModelFile.open(quantized)) {
            for (WeightTensor t : q.tensors().values()) {
                seen.add(t.type());
                if (t.type() == GgmlType.F32 || t.type() == GgmlType.F16) continue;
                WeightTensor s = source.tensor(t.name());
                float[] values = new float[Math.toIntExact(s.elements())];
                for (int r = 0; r < s.rows(); r++) {
                    GgmlQuantize.dequantizeRow(s.type(), s.data(), r * s.rowBytes(), values, r * s.cols(), s.cols());
                }
                MemorySegment ours = MemorySegment.ofArray(new byte[Math.toIntExact(t.rowBytes() * t.rows())]);
                for (int r = 0; r < t.rows(); r++) {
                    GgmlQuantize.quantizeRow(t.type(), values, r * t.cols(), t.cols(), ours, r * t.rowBytes());
                }
                long at = ours.mismatch(t.data().asSlice(0, ours.byteSize()));
                if (at >= 0) {
                    long differing = 0;
                    for (long i = 0; i < ours.byteSize(); i++) {
                        if (ours.get(java.lang.foreign.ValueLayout.JAVA_BYTE, i) != t.data().get(java.lang.foreign.ValueLayout.JAVA_BYTE, i)) differing++;
                    }
                    mismatches.put(t.name(), t.type() + ": " + differing + " of " + ours.byteSize() + " bytes differ");
                }
            }
        }
        // e.g. smol Q4_K_M: Q5_0, Q8_0, Q6_K; k256 Q2_K: Q2_K, Q3_K, Q6_K
        assertThat(mismatches).as("tensors of types %s that re-encode differently", seen).isEmpty();

        float[] want = decode(f16);
        float[] got = decode(quantized);
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < want.length; i++) {
            ab += (double) want[i] * got[i];
            aa += (double) want[i] * want[i];
            bb += (double) got[i] * got[i];
        }
        // Observed 0.87 (k256 Q2_K) to 0.9998 (Q8_0); a field read wrong gives next to nothing
        assertThat(ab / Math.sqrt(aa * bb)).isGreaterThan(0.8);
    }

    private static float[] decode(Path file) {
        try (CpuBackend backend = new CpuBackend(1);
             LlamaModel m = LlamaModel.load(file, backend, 1);
             KvCacheManager kvm = new KvCacheManager(m.kvGeometry(), 16L << 20);
             PagedSequence cache = kvm.open("fp32")) {
            int vocab = m.config().vocabSize();
            float[] all = new float[3 * vocab];
            float[] logits = m.forward(List.of(new SequenceChunk(cache, new int[] {1, 300, 301, 302, 5}, false)))[0];
            System.arraycopy(logits, 0, all, 0, vocab);
            for (int i = 1; i < 3; i++) {
                logits = m.forward(List.of(new SequenceChunk(cache, new int[] {260 + i}, false)))[0];
                System.arraycopy(logits, 0, all, i * vocab, vocab);
            }
            for (float v : all) assertThat(v).isFinite();
            return all;
        }
    }
}
