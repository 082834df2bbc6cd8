package dev.kvserve.runtime.gguf;

import dev.kvserve.kernels.GgmlQuantize;
import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.runtime.ModelFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

class SyntheticModelsTest {

    @TempDir
    Path dir;

    /** A Qwen2-shaped model small enough to write in milliseconds: biases, tied embeddings, GQA 4:1. */
    static final SyntheticModels.Spec SMALL_QWEN = new SyntheticModels.Spec("small-qwen", "qwen2", 64, 2, 8, 2, 8, 96,
            300, 512, 1000000f, 1e-6f, true, true, null);

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"F32", "F16", "BF16", "Q8_0", "Q4_0"})
    void tinyPresetHasItsShapesMetadataAndTokenizer(GgmlType type) throws Exception {
        SyntheticModels.Spec spec = SyntheticModels.preset("tiny");
        Path file = dir.resolve("tiny.gguf");
        SyntheticModels.write(file, spec, type, 7);
        try (ModelFile m = ModelFile.open(file)) {
            assertThat(m.architecture()).isEqualTo("llama");
            assertThat(m.getInt("llama.embedding_length")).isEqualTo(64);
            assertThat(m.getInt("llama.block_count")).isEqualTo(2);
            assertThat(m.getInt("llama.attention.head_count")).isEqualTo(4);
            assertThat(m.getInt("llama.attention.head_count_kv")).isEqualTo(2);
            assertThat(m.getInt("llama.rope.dimension_count")).isEqualTo(16);
            assertThat(m.getInt("llama.feed_forward_length")).isEqualTo(128);
            assertThat(m.getInt("llama.context_length")).isEqualTo(256);
            assertThat(m.getFloat("llama.rope.freq_base")).isEqualTo(10000f);
            assertThat(m.getFloat("llama.attention.layer_norm_rms_epsilon")).isEqualTo(1e-5f);
            assertThat(m.ropeNeox()).isFalse();

            // 2 layers x 9 tensors + token_embd, output_norm, output
            assertThat(m.tensors()).hasSize(21);
            assertThat(m.tensor("token_embd.weight").shape()).containsExactly(64, 320);
            assertThat(m.tensor("output.weight").shape()).containsExactly(64, 320);
            assertThat(m.tensor("blk.1.attn_q.weight").shape()).containsExactly(64, 64);
            assertThat(m.tensor("blk.1.attn_k.weight").shape()).containsExactly(64, 32);
            assertThat(m.tensor("blk.1.attn_v.weight").shape()).containsExactly(64, 32);
            assertThat(m.tensor("blk.1.attn_output.weight").shape()).containsExactly(64, 64);
            assertThat(m.tensor("blk.1.ffn_gate.weight").shape()).containsExactly(64, 128);
            assertThat(m.tensor("blk.1.ffn_down.weight").shape()).containsExactly(128, 64);
            for (WeightTensor t : m.tensors().values()) {
                assertThat(t.type()).as(t.name()).isEqualTo(t.shape().length == 1 ? GgmlType.F32 : type);
            }
            float[] norm = decode(m.tensor("blk.0.ffn_norm.weight"));
            for (float v : norm) assertThat(v).isEqualTo(1f);

            String[] tokens = m.getStringArray("tokenizer.ggml.tokens");
            assertThat(tokens).hasSize(320);
            assertThat(tokens).startsWith("<unk>", "<s>", "</s>", "<0x00>", "<0x01>");
            assertThat(tokens[3 + 0x0A]).isEqualTo("<0x0A>");
            assertThat(tokens[258]).isEqualTo("<0xFF>");
            assertThat(tokens[259]).isEqualTo("\u2581");
            assertThat(new HashSet<>(java.util.List.of(tokens))).hasSize(320);
            int[] types = m.getIntArray("tokenizer.ggml.token_type");
            assertThat(types[0]).isEqualTo(2);
            assertThat(types[1]).isEqualTo(3);
            assertThat(types[100]).isEqualTo(6);
            assertThat(types[300]).isEqualTo(1);
            assertThat(m.getFloatArray("tokenizer.ggml.scores")).hasSize(320);
            assertThat(m.getString("tokenizer.ggml.model")).isEqualTo("llama");
            assertThat(m.getInt("tokenizer.ggml.bos_token_id")).isEqualTo(1);
            assertThat(m.getInt("tokenizer.ggml.eos_token_id")).isEqualTo(2);
        }
    }

    @Test
    void weightsAreSeededNormalsWithTheIntendedSpread() throws Exception {
        Path a = dir.resolve("a.gguf");
        Path b = dir.resolve("b.gguf");
        Path c = dir.resolve("c.gguf");
        SyntheticModels.write(a, SMALL_QWEN, GgmlType.F32, 11);
        SyntheticModels.write(b, SMALL_QWEN, GgmlType.F32, 11);
        SyntheticModels.write(c, SMALL_QWEN, GgmlType.F32, 12);
        assertThat(Files.mismatch(a, b)).isEqualTo(-1);
        assertThat(Files.mismatch(a, c)).isNotEqualTo(-1);
        try (ModelFile m = ModelFile.open(a)) {
            float[] w = decode(m.tensor("token_embd.weight"));
            double sum = 0, squares = 0;
            for (float v : w) {
                sum += v;
                squares += (double) v * v;
            }
            double mean = sum / w.length;
            double std = Math.sqrt(squares / w.length - mean * mean);
            // 19,200 draws: the sample mean is within 4 standard errors (4 * 0.02 / sqrt(19200))
            assertThat(mean).isCloseTo(0, within(6e-4));
            assertThat(std).isCloseTo(0.02, within(0.0006));
            // different tensors draw from different streams
            float[] q0 = decode(m.tensor("blk.0.attn_q.weight"));
            float[] q1 = decode(m.tensor("blk.1.attn_q.weight"));
            assertThat(q0).isNotEqualTo(q1);
        }
    }

    @Test
    void qwen2SpecHasBiasesAndTiedEmbeddings() throws Exception {
        Path file = dir.resolve("qwen.gguf");
        SyntheticModels.write(file, SMALL_QWEN, GgmlType.Q8_0, 3);
        try (ModelFile m = ModelFile.open(file)) {
            assertThat(m.architecture()).isEqualTo("qwen2");
            assertThat(m.ropeNeox()).isTrue();
            assertThat(m.tensors()).doesNotContainKey("output.weight");
            assertThat(m.tensor("blk.0.attn_q.bias").shape()).containsExactly(64);
            assertThat(m.tensor("blk.0.attn_k.bias").shape()).containsExactly(16);
            assertThat(m.tensor("blk.0.attn_v.bias").shape()).containsExactly(16);
            assertThat(m.tensor("blk.0.attn_q.bias").type()).isEqualTo(GgmlType.F32);
            assertThat(m.tensor("blk.1.attn_k.weight").shape()).containsExactly(64, 16);
            // ffn_down rows are 96 long, a multiple of 32: Q8_0. token_embd takes the weight type too.
            assertThat(m.tensor("blk.1.ffn_down.weight").type()).isEqualTo(GgmlType.Q8_0);
            assertThat(m.tensor("token_embd.weight").type()).isEqualTo(GgmlType.Q8_0);
            assertThat(m.getInt("qwen2.attention.head_count_kv")).isEqualTo(2);
            assertThat(m.getInt("general.file_type")).isEqualTo(7);
            long stored = m.tensors().values().stream().mapToLong(WeightTensor::elements).sum();
            assertThat(stored).isEqualTo(SMALL_QWEN.parameterCount());
        }
    }

    @Test
    void rowsThatDoNotFillQuantBlocksFallBackToF16() throws Exception {
        SyntheticModels.Spec odd = new SyntheticModels.Spec("odd", "llama", 64, 1, 4, 4, 16, 172, 260, 64,
                10000f, 1e-5f, false, false, null);
        Path file = dir.resolve("odd.gguf");
        SyntheticModels.write(file, odd, GgmlType.Q8_0, 1);
        try (ModelFile m = ModelFile.open(file)) {
            assertThat(m.tensor("blk.0.ffn_down.weight").type()).isEqualTo(GgmlType.F16);
            assertThat(m.tensor("blk.0.ffn_up.weight").type()).isEqualTo(GgmlType.Q8_0);
        }
    }

    @Test
    void llama3RopeScalingWritesRopeFreqs() throws Exception {
        SyntheticModels.Spec spec = new SyntheticModels.Spec("small-llama3", "llama", 64, 1, 2, 1, 32, 64, 260, 1024,
                500000f, 1e-5f, true, false, new SyntheticModels.Llama3Rope(32, 1, 4, 8192));
        Path file = dir.resolve("llama3.gguf");
        SyntheticModels.write(file, spec, GgmlType.F16, 1);
        try (ModelFile m = ModelFile.open(file)) {
            float[] factors = decode(m.tensor("rope_freqs.weight"));
            assertThat(factors).hasSize(16);
            // the highest frequencies are left alone, the lowest slowed by the full factor
            assertThat(factors[0]).isEqualTo(1f);
            assertThat(factors[15]).isEqualTo(32f);
            for (int i = 1; i < 16; i++) assertThat(factors[i]).isGreaterThanOrEqualTo(factors[i - 1]);
        }
    }

    /**
     * Parameter counts published for each model (model cards and the Hugging Face safetensors index
     * totals): the preset dimensions are right only if these come out exactly.
     */
    @Test
    void presetsHaveThePublishedParameterCounts() {
        Map<String, Long> published = Map.of(
                "llama-2-7b", 6_738_415_616L,
                "tinyllama-1.1b", 1_100_048_384L,
                "llama-3.2-1b", 1_235_814_400L,
                "qwen2.5-0.5b", 494_032_768L,
                "smollm2-135m", 134_515_008L,
                "qwen2.5-1.5b", 1_543_714_304L,
                "llama-3.1-8b", 8_030_261_248L,
                "mistral-7b-v0.3", 7_248_023_552L);
        for (Map.Entry<String, Long> e : published.entrySet()) {
            assertThat(SyntheticModels.preset(e.getKey()).parameterCount()).as(e.getKey()).isEqualTo(e.getValue());
        }
        assertThat(SyntheticModels.presetNames()).contains("llama-3.2-1b", "smollm2-135m", "qwen2.5-0.5b", "tinyllama-1.1b", "llama-2-7b");
        assertThat(SyntheticModels.preset("qwen2.5-0.5b").qkvBias()).isTrue();
        assertThat(SyntheticModels.preset("llama-3.2-1b").tiedEmbeddings()).isTrue();
        assertThat(SyntheticModels.preset("llama-2-7b").tiedEmbeddings()).isFalse();
        assertThatThrownBy(() -> SyntheticModels.preset("gpt-5")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("llama-3.2-1b");
    }

    @Test
    void presetTensorShapesFollowTheirDimensions() {
        SyntheticModels.Spec llama = SyntheticModels.preset("llama-3.2-1b");
        Map<String, long[]> shapes = llama.tensorShapes();
        assertThat(shapes).doesNotContainKey("output.weight");
        assertThat(shapes.get("token_embd.weight")).containsExactly(2048, 128256);
        assertThat(shapes.get("blk.15.attn_k.weight")).containsExactly(2048, 512);
        assertThat(shapes.get("blk.15.ffn_down.weight")).containsExactly(8192, 2048);
        assertThat(shapes.get("rope_freqs.weight")).containsExactly(32);
        Set<String> qwenNames = SyntheticModels.preset("qwen2.5-0.5b").tensorShapes().keySet();
        assertThat(qwenNames).contains("blk.23.attn_v.bias").doesNotContain("blk.24.attn_norm.weight");
    }

    static float[] decode(WeightTensor t) {
        float[] out = new float[(int) t.elements()];
        GgmlQuantize.dequantizeRow(t.type(), t.data(), 0, out);
        return out;
    }
}
