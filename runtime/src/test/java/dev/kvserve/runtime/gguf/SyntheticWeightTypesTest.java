package dev.kvserve.runtime.gguf;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.kernels.cpu.CpuBackend;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.runtime.ModelFile;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.model.SequenceChunk;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The weight types that llama-quantize's K presets emit, fallbacks included, written by
 * {@link SyntheticModels}, loaded by {@link LlamaModel} on the CPU backend and decoded: the logits
 * of a few steps must point the way the F32 model's do (cosine similarity), which a kernel reading a
 * field wrong would not.
 */
class SyntheticWeightTypesTest {

    @TempDir
    Path dir;

    /** 256 wide everywhere, so every K type is stored as itself. */
    static final SyntheticModels.Spec K256 = new SyntheticModels.Spec("k256", "llama", 256, 1, 4, 2, 64, 512,
            320, 64, 10000f, 1e-5f, false, false, null);
    /** SmolLM2-135M's widths (576, heads of 64, 3 KV heads, FFN 1536) in one layer, tied embeddings. */
    static final SyntheticModels.Spec SMOL = new SyntheticModels.Spec("smol-like", "llama", 576, 1, 9, 3, 64, 1536,
            320, 64, 10000f, 1e-5f, true, false, null);

    private static final int[] PROMPT = {1, 300, 301, 302, 5, 77};
    private static final int[] CONTINUATION = {7, 259, 310};

    @ParameterizedTest(name = "{0}")
    // Observed: Q4_1 0.988, Q5_0 0.996, Q5_1 0.997, IQ4_NL 0.990, Q2_K 0.837, Q3_K 0.957, Q5_K 0.998 (a
    // field read wrong gives next to nothing: the weights are random)
    @CsvSource({"Q4_1, 0.98", "Q5_0, 0.99", "Q5_1, 0.99", "IQ4_NL, 0.98", "Q2_K, 0.8", "Q3_K, 0.93", "Q5_K, 0.99"})
    void everyMatrixIsStoredInTheTypeAndDecodesLikeTheF32Model(GgmlType type, double minCosine) throws Exception {
        Path f32 = dir.resolve("f32.gguf");
        Path quantized = dir.resolve(type + ".gguf");
        SyntheticModels.write(f32, K256, GgmlType.F32, 5);
        SyntheticModels.write(quantized, K256, type, 5);
        try (ModelFile m = ModelFile.open(quantized)) {
            for (WeightTensor t : m.tensors().values()) {
                assertThat(t.type()).as(t.name()).isEqualTo(t.shape().length == 1 ? GgmlType.F32 : type);
            }
            assertThat(m.getInt("general.file_type")).isEqualTo(SyntheticModels.fileType(type));
        }
        double cosine = cosine(decode(f32), decode(quantized));
        assertThat(cosine).isGreaterThan(minCosine);
    }

    /** 576-wide rows are not whole super-blocks: llama-quantize's fallbacks, then decode. */
    @ParameterizedTest(name = "{0} falls back to {1}")
    // Observed: 0.993, 0.994, 0.9998, 0.968, 0.953
    @CsvSource({"Q4_K, Q5_0, 0.99", "Q5_K, Q5_1, 0.99", "Q6_K, Q8_0, 0.999", "Q3_K, Q4_0, 0.94", "Q2_K, Q4_0, 0.93"})
    void aSmolLm2ShapedFileUsesTheFallbackTypesAndDecodes(GgmlType type, GgmlType fallback, double minCosine) throws Exception {
        Path f32 = dir.resolve("f32.gguf");
        Path quantized = dir.resolve(type + ".gguf");
        SyntheticModels.write(f32, SMOL, GgmlType.F32, 9);
        SyntheticModels.write(quantized, SMOL, type, 9);
        try (ModelFile m = ModelFile.open(quantized)) {
            assertThat(m.tensor("blk.0.attn_q.weight").type()).isEqualTo(fallback);
            assertThat(m.tensor("blk.0.ffn_up.weight").type()).isEqualTo(fallback);
            assertThat(m.tensor("token_embd.weight").type()).isEqualTo(fallback);
            // ffn_down's rows are 1536 = 6 × 256 long
            assertThat(m.tensor("blk.0.ffn_down.weight").type()).isEqualTo(type);
        }
        double cosine = cosine(decode(f32), decode(quantized));
        assertThat(cosine).isGreaterThan(minCosine);
    }

    /** The logits of the prompt's last token and of each continuation token, fed one at a time. */
    private static float[] decode(Path file) {
        try (CpuBackend backend = new CpuBackend(1);
             LlamaModel m = LlamaModel.load(file, backend, 1);
             KvCacheManager kvm = new KvCacheManager(m.kvGeometry(), 16L << 20);
             PagedSequence cache = kvm.open("fp32")) {
            int vocab = m.config().vocabSize();
            float[] all = new float[(1 + CONTINUATION.length) * vocab];
            float[] logits = m.forward(List.of(new SequenceChunk(cache, PROMPT, false)))[0];
            System.arraycopy(logits, 0, all, 0, vocab);
            for (int i = 0; i < CONTINUATION.length; i++) {
                logits = m.forward(List.of(new SequenceChunk(cache, new int[] {CONTINUATION[i]}, false)))[0];
                System.arraycopy(logits, 0, all, (i + 1) * vocab, vocab);
            }
            for (float v : all) assertThat(v).isFinite();
            return all;
        }
    }

    private static double cosine(float[] a, float[] b) {
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < a.length; i++) {
            ab += (double) a[i] * b[i];
            aa += (double) a[i] * a[i];
            bb += (double) b[i] * b[i];
        }
        return ab / Math.sqrt(aa * bb);
    }
}
