package dev.kvserve.runtime.gguf;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.runtime.ModelFile;
import dev.kvserve.runtime.ModelFormatException;
import dev.kvserve.runtime.SharedModels;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

class GgufFileTest {

    static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @Test
    void readsStories260kHeaderAndMetadata() throws Exception {
        try (GgufFile f = GgufFile.open(SharedModels.file("stories260K.gguf"))) {
            assertThat(f.version()).isEqualTo(3);
            assertThat(f.metadata()).hasSize(19);
            assertThat(f.tensors()).hasSize(48);
            assertThat(f.alignment()).isEqualTo(32);
            // the tensor infos end at byte 14152 (an independent Python walk of the header), padded to 32
            assertThat(f.dataOffset()).isEqualTo(14176);

            assertThat(f.architecture()).isEqualTo("llama");
            assertThat(f.metadata().get("llama.block_count")).isEqualTo(5L);
            assertThat(f.valueType("llama.block_count")).isEqualTo(GgufValueType.UINT32);
            assertThat(f.getInt("llama.embedding_length")).isEqualTo(64);
            assertThat(f.getInt("llama.feed_forward_length")).isEqualTo(172);
            assertThat(f.getInt("llama.attention.head_count")).isEqualTo(8);
            assertThat(f.getInt("llama.attention.head_count_kv")).isEqualTo(4);
            assertThat(f.getInt("llama.rope.dimension_count")).isEqualTo(8);
            assertThat(f.getInt("llama.context_length")).isEqualTo(2048);
            assertThat(f.metadata().get("llama.attention.layer_norm_rms_epsilon")).isInstanceOf(Float.class);
            assertThat(f.getFloat("llama.attention.layer_norm_rms_epsilon")).isEqualTo(1e-5f);
            assertThat(f.has("llama.rope.freq_base")).isFalse();
            assertThat(f.getFloat("llama.rope.freq_base", 10000f)).isEqualTo(10000f);
            assertThat(f.ropeNeox()).isFalse();

            // uint32 0xFFFFFFFF ("no such token") stays exact as a Long and does not fit an int
            assertThat(f.getLong("tokenizer.ggml.seperator_token_id")).isEqualTo(4294967295L);
            assertThatThrownBy(() -> f.getInt("tokenizer.ggml.seperator_token_id"))
                    .isExactlyInstanceOf(ModelFormatException.class).hasMessageContaining("does not fit in an int");

            String[] tokens = f.getStringArray("tokenizer.ggml.tokens");
            assertThat(tokens).hasSize(512);
            assertThat(tokens[0]).isEqualTo("<unk>");
            assertThat(tokens[1]).isEqualTo("<s>");
            assertThat(tokens[2]).isEqualTo("</s>");
            assertThat(tokens[3]).isEqualTo("<0x00>");
            assertThat(tokens[258]).isEqualTo("<0xFF>");
            assertThat(f.arrayElementType("tokenizer.ggml.tokens")).isEqualTo(GgufValueType.STRING);
            assertThat(f.getFloatArray("tokenizer.ggml.scores")).hasSize(512);
            assertThat(f.metadata().get("tokenizer.ggml.token_type")).isInstanceOf(int[].class);
            assertThat(f.getIntArray("tokenizer.ggml.token_type")).startsWith(2, 3, 3, 6, 6);
            assertThat(f.getInt("tokenizer.ggml.bos_token_id")).isEqualTo(1);
        }
    }

    @Test
    void mapsStories260kTensors() throws Exception {
        try (GgufFile f = GgufFile.open(SharedModels.file("stories260K.gguf"))) {
            assertThat(f.tensors().values()).allMatch(t -> t.type() == GgmlType.F32);
            List<String> names = List.copyOf(f.tensors().keySet());
            assertThat(names.subList(0, 4)).containsExactly("token_embd.weight", "output_norm.weight", "output.weight", "blk.0.attn_q.weight");

            WeightTensor embd = f.tensor("token_embd.weight");
            assertThat(embd.shape()).containsExactly(64, 512);
            assertThat(embd.cols()).isEqualTo(64);
            assertThat(embd.rows()).isEqualTo(512);
            assertThat(embd.data().byteSize()).isEqualTo(64 * 512 * 4);
            // values read independently with Python's struct at file offset 14176
            assertThat(embd.data().get(F32, 0)).isEqualTo(-0.29474878311157227f);
            assertThat(embd.data().get(F32, 4)).isEqualTo(0.5618956089019775f);
            assertThat(embd.data().get(F32, 12)).isEqualTo(0.34057360887527466f);
            assertThat(f.tensor("blk.4.ffn_norm.weight").data().get(F32, 63 * 4)).isEqualTo(1.234261155128479f);

            assertThat(f.tensor("blk.0.attn_k.weight").shape()).containsExactly(64, 32);
            assertThat(f.tensor("blk.3.ffn_down.weight").shape()).containsExactly(172, 64);
            assertThat(f.tensor("blk.3.ffn_up.weight").shape()).containsExactly(64, 172);
            // the README: output.weight is a bit-identical copy of token_embd.weight
            assertThat(f.tensor("output.weight").data().mismatch(embd.data())).isEqualTo(-1);
            assertThat(f.optionalTensor("blk.0.attn_q.bias")).isEmpty();
            assertThatThrownBy(() -> f.tensor("blk.5.attn_q.weight"))
                    .isExactlyInstanceOf(ModelFormatException.class)
                    .hasMessageContaining("stories260K.gguf").hasMessageContaining("blk.5.attn_q.weight")
                    .hasMessageContaining("no such tensor");
        }
    }

    @Test
    void q8_0FileHoldsTheReadmesTypesAndTheSameWeights() throws Exception {
        try (GgufFile q = GgufFile.open(SharedModels.file("stories260K-q8_0.gguf"));
             GgufFile f = GgufFile.open(SharedModels.file("stories260K.gguf"))) {
            assertThat(q.tensors()).hasSize(48);
            assertThat(q.metadata()).hasSize(21);
            assertThat(q.getInt("general.file_type")).isEqualTo(7);
            for (WeightTensor t : q.tensors().values()) {
                GgmlType expected = t.name().endsWith("_norm.weight") ? GgmlType.F32
                        : t.name().endsWith("ffn_down.weight") ? GgmlType.F16 : GgmlType.Q8_0;
                assertThat(t.type()).as(t.name()).isEqualTo(expected);
                assertThat(t.shape()).as(t.name()).containsExactly(f.tensor(t.name()).shape());
            }
            // Q8_0 blocks: an f16 scale d and 32 int8 q = round(x / d'), where d' is the scale before its
            // rounding to f16; so |d * q - x| <= d/2 + 127 * |d - d'| <= d/2 + 127 * d * 2^-11 < 0.57 d
            WeightTensor q8 = q.tensor("blk.2.attn_q.weight");
            WeightTensor f32 = f.tensor("blk.2.attn_q.weight");
            assertThat(q8.data().byteSize()).isEqualTo(64 * 64 / 32 * 34);
            for (int block = 0; block < 64 * 64 / 32; block++) {
                float d = Float.float16ToFloat(q8.data().get(I16, block * 34L));
                for (int i = 0; i < 32; i++) {
                    float value = d * q8.data().get(ValueLayout.JAVA_BYTE, block * 34L + 2 + i);
                    float original = f32.data().get(F32, (block * 32L + i) * 4);
                    assertThat(value).isCloseTo(original, within(d * 0.57f + 1e-6f));
                }
            }
            WeightTensor f16 = q.tensor("blk.1.ffn_down.weight");
            WeightTensor down = f.tensor("blk.1.ffn_down.weight");
            for (long i = 0; i < 172 * 64; i += 97) {
                float original = down.data().get(F32, i * 4);
                assertThat(Float.float16ToFloat(f16.data().get(I16, i * 2))).isEqualTo(Float.float16ToFloat(Float.floatToFloat16(original)));
            }
        }
    }

    @Test
    void readsTinyStoriesGgufs() throws Exception {
        try (ModelFile f = ModelFile.open(SharedModels.file("tinystories-656k/tinystories-656k-f32.gguf"));
             ModelFile q = ModelFile.open(SharedModels.file("tinystories-656k/tinystories-656k-q8_0.gguf"))) {
            assertThat(f).isInstanceOf(GgufFile.class);
            assertThat(f.tensors()).hasSize(20);
            assertThat(f.metadata()).hasSize(24);
            assertThat(q.tensors()).hasSize(20);
            assertThat(q.metadata()).hasSize(25);
            assertThat(f.tensors()).doesNotContainKey("output.weight"); // tied: llama.cpp reuses token_embd
            assertThat(f.tensors().values()).allMatch(t -> t.type() == GgmlType.F32);
            for (WeightTensor t : q.tensors().values()) {
                assertThat(t.type()).as(t.name()).isEqualTo(t.shape().length == 1 ? GgmlType.F32 : GgmlType.Q8_0);
            }
            assertThat(f.tensor("token_embd.weight").shape()).containsExactly(128, 2048);
            assertThat(f.tensor("blk.1.ffn_down.weight").shape()).containsExactly(384, 128);
            assertThat(f.getInt("llama.context_length")).isEqualTo(512);
            assertThat(f.getFloat("llama.rope.freq_base")).isEqualTo(10000f);
            assertThat(f.getFloat("llama.attention.layer_norm_rms_epsilon")).isEqualTo(1e-6f);
            assertThat(f.getBoolean("tokenizer.ggml.add_bos_token", false)).isTrue();
            assertThat(f.getBoolean("tokenizer.ggml.add_space_prefix", false)).isTrue();
            assertThat(f.getStringArray("tokenizer.ggml.tokens")[1]).isEqualTo("<|start_story|>");
            assertThat(f.getString("general.name")).isEqualTo("TinyStories-656K");
        }
    }

    @Test
    void typedGettersNameTheKeyAndTheProblem() throws Exception {
        try (GgufFile f = GgufFile.open(SharedModels.file("stories260K.gguf"))) {
            assertThatThrownBy(() -> f.getInt("llama.expert_count"))
                    .isExactlyInstanceOf(ModelFormatException.class)
                    .hasMessageContaining("stories260K.gguf").hasMessageContaining("'llama.expert_count' is missing");
            assertThatThrownBy(() -> f.getInt("general.architecture"))
                    .isExactlyInstanceOf(ModelFormatException.class).hasMessageContaining("is a String, expected an integer");
            assertThatThrownBy(() -> f.getStringArray("tokenizer.ggml.scores"))
                    .isExactlyInstanceOf(ModelFormatException.class).hasMessageContaining("expected an array of strings");
            assertThat(f.getInt("llama.expert_count", 0)).isZero();
            assertThat(f.metadata()).isUnmodifiable();
            assertThat(f.tensors()).isUnmodifiable();
        }
    }

    @Test
    void tensorsAreUnusableAfterClose() throws Exception {
        GgufFile f = GgufFile.open(SharedModels.file("stories260K.gguf"));
        MemorySegment data = f.tensor("token_embd.weight").data();
        assertThat(data.get(F32, 0)).isNotZero();
        f.close();
        f.close(); // idempotent
        assertThatThrownBy(() -> data.get(F32, 0)).isInstanceOf(IllegalStateException.class);
    }

    @Test
    void metadataKeepsFileOrder() throws Exception {
        try (GgufFile f = GgufFile.open(SharedModels.file("stories260K.gguf"))) {
            assertThat(List.copyOf(f.metadata().keySet()).subList(0, 5)).containsExactly(
                    "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                    "tokenizer.ggml.model", "general.architecture");
            for (Map.Entry<String, WeightTensor> e : f.tensors().entrySet()) assertThat(e.getValue().name()).isEqualTo(e.getKey());
        }
    }
}
