package dev.kvserve.runtime.safetensors;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.runtime.ModelFile;
import dev.kvserve.runtime.ModelFormatException;
import dev.kvserve.runtime.SharedModels;
import dev.kvserve.runtime.gguf.GgufFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.catchThrowable;

class HuggingFaceModelTest {

    @TempDir
    Path tmp;

    static Path tinyStories() {
        return SharedModels.dir().resolve("tinystories-656k");
    }

    @Test
    void translatesTinyStoriesConfigToGgufKeys() throws Exception {
        try (ModelFile m = ModelFile.open(tinyStories())) {
            assertThat(m).isInstanceOf(HuggingFaceModel.class);
            assertThat(m.path()).isEqualTo(tinyStories());
            assertThat(m.architecture()).isEqualTo("llama");
            Map<String, Object> md = m.metadata();
            assertThat(md).containsEntry("llama.block_count", 2L)
                    .containsEntry("llama.embedding_length", 128L)
                    .containsEntry("llama.feed_forward_length", 384L)
                    .containsEntry("llama.attention.head_count", 8L)
                    .containsEntry("llama.attention.head_count_kv", 4L)
                    .containsEntry("llama.rope.dimension_count", 16L)
                    .containsEntry("llama.context_length", 512L)
                    .containsEntry("llama.vocab_size", 2048L)
                    .containsEntry("llama.rope.freq_base", 10000f)
                    .containsEntry("llama.attention.layer_norm_rms_epsilon", 1e-6f)
                    .containsEntry("tokenizer.ggml.bos_token_id", 1L)
                    .containsEntry("tokenizer.ggml.eos_token_id", 2L)
                    .containsEntry("kvserve.rope.neox", true)
                    .containsEntry("kvserve.tie_word_embeddings", true)
                    .containsEntry("kvserve.hf.architecture", "LlamaForCausalLM");
            assertThat(m.ropeNeox()).isTrue();
            assertThat(Path.of(m.getString("kvserve.hf.tokenizer_json"))).isEqualTo(tinyStories().resolve("tokenizer.json").toAbsolutePath());
            assertThat(Path.of(m.getString("kvserve.hf.tokenizer_config"))).isEqualTo(tinyStories().resolve("tokenizer_config.json").toAbsolutePath());
            assertThat(md).doesNotContainKey("llama.rope.scaling.type");
            // the same hyper-parameters as llama.cpp-style conversion of the same checkpoint
            try (GgufFile gguf = GgufFile.open(tinyStories().resolve("tinystories-656k-f32.gguf"))) {
                for (String key : List.of("llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                        "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.dimension_count",
                        "llama.context_length", "llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon",
                        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")) {
                    assertThat(md.get(key)).as(key).isEqualTo(gguf.metadata().get(key));
                }
            }
        }
    }

    @Test
    void mapsTensorsZeroCopyWithTiedEmbeddings() throws Exception {
        try (ModelFile m = ModelFile.open(tinyStories().resolve("model.safetensors"))) {
            // 2 layers x 9, the final norm, lm_head, and token_embd standing in for the dropped embed_tokens
            assertThat(m.tensors()).hasSize(21);
            assertThat(List.copyOf(m.tensors().keySet()).subList(0, 4))
                    .containsExactly("token_embd.weight", "output_norm.weight", "output.weight", "blk.0.attn_norm.weight");
            WeightTensor embd = m.tensor("token_embd.weight");
            WeightTensor out = m.tensor("output.weight");
            assertThat(embd.name()).isEqualTo("token_embd.weight");
            assertThat(embd.shape()).containsExactly(128, 2048);
            assertThat(embd.data().address()).isEqualTo(out.data().address());
            assertThat(m.tensor("blk.1.ffn_down.weight").shape()).containsExactly(384, 128);
            assertThat(m.tensor("blk.1.ffn_gate.weight").shape()).containsExactly(128, 384);
            assertThat(m.tensor("blk.0.attn_k.weight").shape()).containsExactly(128, 64);
            assertThat(m.tensor("output_norm.weight").shape()).containsExactly(128);
            assertThat(m.tensors().values()).allMatch(t -> t.type() == GgmlType.F32);
            // the data is the file's: lm_head.weight starts right after the 8 + 2160 header bytes
            assertThat(embd.data().isMapped()).isTrue();
        }
    }

    /**
     * The GGUF next door was converted from this checkpoint by llama.cpp's rules: same bytes for
     * every tensor, except Q and K, whose rows were permuted from rotate-half to adjacent pairs.
     * Comparing proves the name mapping, the shape reversal and the data offsets.
     */
    @Test
    void agreesWithTheLlamaCppConversion() throws Exception {
        try (ModelFile hf = ModelFile.open(tinyStories());
             GgufFile gguf = GgufFile.open(tinyStories().resolve("tinystories-656k-f32.gguf"))) {
            for (WeightTensor g : gguf.tensors().values()) {
                WeightTensor h = hf.tensor(g.name());
                assertThat(h.shape()).as(g.name()).containsExactly(g.shape());
                int heads = g.name().endsWith("attn_q.weight") ? 8 : g.name().endsWith("attn_k.weight") ? 4 : 0;
                if (heads == 0) {
                    assertThat(h.data().mismatch(g.data())).as(g.name()).isEqualTo(-1);
                    continue;
                }
                int headDim = 16;
                long rowBytes = g.rowBytes();
                for (int row = 0; row < g.rows(); row++) {
                    int head = row / headDim, j = row % headDim;
                    int hfRow = head * headDim + (j % 2) * (headDim / 2) + j / 2;
                    MemorySegment gRow = g.data().asSlice(row * rowBytes, rowBytes);
                    MemorySegment hRow = h.data().asSlice(hfRow * rowBytes, rowBytes);
                    assertThat(gRow.mismatch(hRow)).as(g.name() + " row " + row).isEqualTo(-1);
                }
            }
            assertThat(hf.tensors().keySet()).containsAll(gguf.tensors().keySet());
        }
    }

    @Test
    void readsShardedCheckpoints() throws Exception {
        Path dir = Files.createDirectory(tmp.resolve("sharded"));
        Files.copy(tinyStories().resolve("config.json"), dir.resolve("config.json"));
        List<String> names;
        try (SafetensorsFile single = SafetensorsFile.open(tinyStories().resolve("model.safetensors"))) {
            names = new ArrayList<>(single.tensors().keySet());
            SafetensorsWriter first = new SafetensorsWriter().metadata("format", "pt")
                    .metadata("model.embed_tokens.weight", "lm_head.weight");
            SafetensorsWriter second = new SafetensorsWriter().metadata("format", "pt");
            StringBuilder weightMap = new StringBuilder();
            for (int i = 0; i < names.size(); i++) {
                SafetensorsFile.Tensor t = single.tensors().get(names.get(i));
                String shard = i < 9 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
                (i < 9 ? first : second).add(t.name(), t.dtype(), t.shape(), t.data().toArray(ValueLayout.JAVA_BYTE));
                weightMap.append(i == 0 ? "" : ",").append('"').append(t.name()).append("\":\"").append(shard).append('"');
            }
            first.write(dir.resolve("model-00001-of-00002.safetensors"));
            second.write(dir.resolve("model-00002-of-00002.safetensors"));
            Files.writeString(dir.resolve(HuggingFaceModel.SHARD_INDEX),
                    "{\"metadata\":{\"total_size\":2624000},\"weight_map\":{" + weightMap + "}}");
        }
        try (HuggingFaceModel sharded = HuggingFaceModel.open(dir); ModelFile single = ModelFile.open(tinyStories())) {
            assertThat(sharded.weightFiles()).hasSize(2);
            assertThat(sharded.tensors().keySet()).containsExactlyElementsOf(single.tensors().keySet());
            for (WeightTensor t : single.tensors().values()) {
                assertThat(sharded.tensor(t.name()).data().mismatch(t.data())).as(t.name()).isEqualTo(-1);
                assertThat(sharded.tensor(t.name()).shape()).containsExactly(t.shape());
            }
            // token_embd / output cross no shard: both are the one lm_head tensor in shard 1
            assertThat(sharded.tensor("token_embd.weight").data().address()).isEqualTo(sharded.tensor("output.weight").data().address());
        }
    }

    // ---- a made-up Qwen2 / Llama 3 checkpoint ----

    static byte[] randomBytes(long elements, int bytesEach, Random random) {
        byte[] b = new byte[(int) (elements * bytesEach)];
        random.nextBytes(b);
        return b;
    }

    /** A one-layer checkpoint with the given dtype and options; hidden 32, 4 heads, 2 KV heads, ffn 48, vocab 16. */
    static Path writeCheckpoint(Path dir, String architecture, String dtype, boolean biases, boolean tied,
                                String extraConfig) throws Exception {
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), """
                {"architectures": ["%s"], "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "intermediate_size": 48, "vocab_size": 16, "max_position_embeddings": 64,
                 "rope_theta": 500000.0, "rms_norm_eps": 1e-05, "tie_word_embeddings": %s,
                 "bos_token_id": 5, "eos_token_id": [6, 7]%s}
                """.formatted(architecture, tied, extraConfig));
        int size = dtype.equals("F32") ? 4 : 2;
        Random random = new Random(1);
        SafetensorsWriter w = new SafetensorsWriter();
        w.add("model.embed_tokens.weight", dtype, new long[] {16, 32}, randomBytes(16 * 32, size, random));
        if (!tied) w.add("lm_head.weight", dtype, new long[] {16, 32}, randomBytes(16 * 32, size, random));
        w.add("model.norm.weight", dtype, new long[] {32}, randomBytes(32, size, random));
        String p = "model.layers.0.";
        w.add(p + "input_layernorm.weight", dtype, new long[] {32}, randomBytes(32, size, random));
        w.add(p + "self_attn.q_proj.weight", dtype, new long[] {32, 32}, randomBytes(32 * 32, size, random));
        w.add(p + "self_attn.k_proj.weight", dtype, new long[] {16, 32}, randomBytes(16 * 32, size, random));
        w.add(p + "self_attn.v_proj.weight", dtype, new long[] {16, 32}, randomBytes(16 * 32, size, random));
        if (biases) {
            w.add(p + "self_attn.q_proj.bias", dtype, new long[] {32}, randomBytes(32, size, random));
            w.add(p + "self_attn.k_proj.bias", dtype, new long[] {16}, randomBytes(16, size, random));
            w.add(p + "self_attn.v_proj.bias", dtype, new long[] {16}, randomBytes(16, size, random));
        }
        w.add(p + "self_attn.o_proj.weight", dtype, new long[] {32, 32}, randomBytes(32 * 32, size, random));
        w.add(p + "self_attn.rotary_emb.inv_freq", "F32", new long[] {4}, randomBytes(4, 4, random));
        w.add(p + "post_attention_layernorm.weight", dtype, new long[] {32}, randomBytes(32, size, random));
        w.add(p + "mlp.gate_proj.weight", dtype, new long[] {48, 32}, randomBytes(48 * 32, size, random));
        w.add(p + "mlp.up_proj.weight", dtype, new long[] {48, 32}, randomBytes(48 * 32, size, random));
        w.add(p + "mlp.down_proj.weight", dtype, new long[] {32, 48}, randomBytes(48 * 32, size, random));
        w.write(dir.resolve("model.safetensors"));
        return dir;
    }

    @Test
    void qwen2CheckpointWithBiasesInBf16() throws Exception {
        Path dir = writeCheckpoint(tmp.resolve("qwen"), "Qwen2ForCausalLM", "BF16", true, true, "");
        try (ModelFile m = ModelFile.open(dir)) {
            assertThat(m.architecture()).isEqualTo("qwen2");
            assertThat(m.getInt("qwen2.attention.head_count_kv")).isEqualTo(2);
            assertThat(m.getInt("qwen2.rope.dimension_count")).isEqualTo(8);
            assertThat(m.getFloat("qwen2.rope.freq_base")).isEqualTo(500000f);
            assertThat(m.getInt("tokenizer.ggml.bos_token_id")).isEqualTo(5);
            assertThat(m.getInt("tokenizer.ggml.eos_token_id")).isEqualTo(6);
            assertThat(m.getIntArray("kvserve.hf.eos_token_ids")).containsExactly(6, 7);
            assertThat(m.has("kvserve.hf.tokenizer_json")).isFalse();
            assertThat(m.tensors().values()).allMatch(t -> t.type() == GgmlType.BF16);
            assertThat(m.tensor("blk.0.attn_q.bias").shape()).containsExactly(32);
            assertThat(m.tensor("blk.0.attn_k.bias").shape()).containsExactly(16);
            assertThat(m.tensor("blk.0.attn_k.weight").shape()).containsExactly(32, 16);
            assertThat(m.tensor("blk.0.ffn_down.weight").shape()).containsExactly(48, 32);
            // tied, with the embedding stored: no output.weight, as in a converted GGUF
            assertThat(m.optionalTensor("output.weight")).isEmpty();
            // 3 globals... minus output, plus 12 per layer; inv_freq is dropped
            assertThat(m.tensors()).hasSize(2 + 12);
        }
    }

    @Test
    void llama3RopeScalingBecomesRopeFreqs() throws Exception {
        Path dir = writeCheckpoint(tmp.resolve("llama3"), "LlamaForCausalLM", "F16", false, false,
                ", \"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
                        + " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}");
        try (ModelFile m = ModelFile.open(dir)) {
            WeightTensor freqs = m.tensor("rope_freqs.weight");
            assertThat(freqs.shape()).containsExactly(4);
            float[] f = freqs.data().toArray(ValueLayout.JAVA_FLOAT);
            // head 8, theta 5e5: wavelengths 2π·θ^(i/4) = 6.3, 167, 4443, 118000; the band edges are 2048 and 8192
            assertThat(f[0]).isEqualTo(1f);
            assertThat(f[1]).isEqualTo(1f);
            double wavelen = 2 * Math.PI * Math.pow(500000, 0.5);
            double smooth = (8192 / wavelen - 1) / 3;
            assertThat((double) f[2]).isCloseTo(1 / ((1 - smooth) / 32 + smooth), org.assertj.core.api.Assertions.within(1e-4));
            assertThat(f[3]).isEqualTo(32f);
            assertThat(m.tensor("output.weight").type()).isEqualTo(GgmlType.F16);
            assertThat(m.tensor("token_embd.weight").data().address()).isNotEqualTo(m.tensor("output.weight").data().address());
        }
        Path linear = writeCheckpoint(tmp.resolve("linear"), "MistralForCausalLM", "F32", false, false,
                ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}");
        try (ModelFile m = ModelFile.open(linear)) {
            assertThat(m.architecture()).isEqualTo("llama");
            assertThat(m.getString("llama.rope.scaling.type")).isEqualTo("linear");
            assertThat(m.getFloat("llama.rope.scaling.factor")).isEqualTo(4f);
            assertThat(m.tensors()).doesNotContainKey("rope_freqs.weight");
        }
    }

    // ---- damaged checkpoints ----

    ModelFormatException openExpectingFailure(Path path, String... messageParts) {
        Throwable thrown = catchThrowable(() -> ModelFile.open(path).close());
        assertThat(thrown).isExactlyInstanceOf(ModelFormatException.class);
        for (String part : messageParts) assertThat(thrown.getMessage()).contains(part);
        return (ModelFormatException) thrown;
    }

    @Test
    void damagedSafetensorsHeaders() throws Exception {
        Path dir = writeCheckpoint(tmp.resolve("bad"), "LlamaForCausalLM", "F32", false, true, "");
        Path weights = dir.resolve("model.safetensors");
        byte[] good = Files.readAllBytes(weights);

        byte[] b = good.clone();
        java.nio.ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(0, 1L << 40);
        Files.write(weights, b);
        openExpectingFailure(dir, "model.safetensors", "header length 1099511627776 does not fit in the file");

        for (int length : new int[] {0, 7, 8, 100, good.length / 2, good.length - 1}) {
            Files.write(weights, java.util.Arrays.copyOf(good, length));
            assertThat(openExpectingFailure(dir).file()).isEqualTo(weights);
        }

        writeHeaderJson(weights, "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},", 8);
        openExpectingFailure(dir, "header is not valid JSON");
        writeHeaderJson(weights, "{\"model.norm.weight\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 12]}}", 16);
        ModelFormatException e = openExpectingFailure(dir, "tensor 'model.norm.weight'", "shape [2, 2] of F32 needs 16 bytes but data_offsets give 12");
        assertThat(e.tensor()).isEqualTo("model.norm.weight");
        writeHeaderJson(weights, "{\"model.norm.weight\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}", 16);
        openExpectingFailure(dir, "data_offsets [8, 24) lie outside the 16 bytes of data");
        writeHeaderJson(weights, "{\"model.norm.weight\": {\"dtype\": \"F7\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16);
        openExpectingFailure(dir, "has unknown dtype F7");
        writeHeaderJson(weights, "{\"model.norm.weight\": {\"dtype\": \"F32\", \"shape\": [-4], \"data_offsets\": [0, 16]}}", 16);
        openExpectingFailure(dir, "shape[0] = -4 is not a non-negative 64-bit integer");
        writeHeaderJson(weights, "{\"model.norm.weight\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                + " \"model.norm.weight\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16);
        openExpectingFailure(dir, "header is not valid JSON", "Duplicate field 'model.norm.weight'");
        writeHeaderJson(weights, "{\"model.norm.weight\": {\"dtype\": \"F32\", \"shape\": [99999999999, 99999999999, 99999999999], \"data_offsets\": [0, 16]}}", 16);
        openExpectingFailure(dir, "has more than 2^63 elements");
        writeHeaderJson(weights, "{\"model.vision_tower.weight\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16);
        openExpectingFailure(dir, "tensor 'model.vision_tower.weight'", "has no GGUF counterpart");
        writeHeaderJson(weights, "{\"model.norm.weight\": {\"dtype\": \"U8\", \"shape\": [16], \"data_offsets\": [0, 16]}}", 16);
        openExpectingFailure(dir, "has dtype U8, which has no ggml counterpart");
        writeHeaderJson(weights, "{\"model.norm.weight\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16);
        openExpectingFailure(dir, "tensor 'model.embed_tokens.weight': is missing");
    }

    /** Replaces {@code file} with a safetensors file whose header is {@code json} and whose data is {@code dataBytes} zeros. */
    static void writeHeaderJson(Path file, String json, int dataBytes) throws Exception {
        byte[] header = json.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(8 + header.length + dataBytes).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        b.putLong(header.length).put(header);
        Files.write(file, b.array());
    }

    @Test
    void unsupportedTensorDtypesAreRefusedForCompute() throws Exception {
        Path dir = writeCheckpoint(tmp.resolve("f64"), "LlamaForCausalLM", "F32", false, true, "");
        SafetensorsWriter w = new SafetensorsWriter();
        try (SafetensorsFile f = SafetensorsFile.open(dir.resolve("model.safetensors"))) {
            for (SafetensorsFile.Tensor t : f.tensors().values()) {
                byte[] data = t.data().toArray(ValueLayout.JAVA_BYTE);
                if (t.name().equals("model.norm.weight")) w.add(t.name(), "F64", t.shape(), java.util.Arrays.copyOf(data, data.length * 2));
                else w.add(t.name(), t.dtype(), t.shape(), data);
            }
        }
        w.write(dir.resolve("model.safetensors"));
        try (ModelFile m = ModelFile.open(dir)) {
            assertThat(m.tensors().get("output_norm.weight").type()).isEqualTo(GgmlType.F64);
            assertThatThrownBy(() -> m.tensor("output_norm.weight"))
                    .isExactlyInstanceOf(ModelFormatException.class)
                    .hasMessageContaining("tensor 'output_norm.weight': has type F64, which KVServe has no kernels for");
        }
    }

    @Test
    void damagedConfigsAndIndexes() throws Exception {
        Path dir = writeCheckpoint(tmp.resolve("cfg"), "LlamaForCausalLM", "F32", false, true, "");
        Path config = dir.resolve("config.json");
        String good = Files.readString(config);

        Files.writeString(config, good.replace("LlamaForCausalLM", "GPT2LMHeadModel"));
        openExpectingFailure(dir, "config.json", "architecture GPT2LMHeadModel is not supported", "Qwen2ForCausalLM");
        Files.writeString(config, good.replace("\"hidden_size\": 32,", ""));
        openExpectingFailure(dir, "config.json: has no hidden_size");
        Files.writeString(config, good.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"));
        openExpectingFailure(dir, "num_attention_heads 4 is not a multiple of num_key_value_heads 3");
        Files.writeString(config, good.replace("\"num_hidden_layers\": 1", "\"num_hidden_layers\": \"one\""));
        openExpectingFailure(dir, "num_hidden_layers = \"one\" is not a positive integer");
        Files.writeString(config, good.replace("\"rope_theta\": 500000.0,", "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4},"));
        openExpectingFailure(dir, "rope_scaling type 'yarn' is not supported");
        Files.writeString(config, good.substring(0, good.length() / 2));
        openExpectingFailure(dir, "config.json: is not valid JSON");
        Files.writeString(config, good.replace("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false"));
        openExpectingFailure(dir, "tensor 'lm_head.weight': is missing and config.json does not tie it");
        Files.delete(config);
        openExpectingFailure(dir, "has no config.json");
        Files.writeString(config, good);

        Path index = dir.resolve(HuggingFaceModel.SHARD_INDEX);
        Files.move(dir.resolve("model.safetensors"), dir.resolve("model-00001-of-00001.safetensors"));
        Files.writeString(index, "{\"weight_map\": {\"model.norm.weight\": \"../../etc/passwd\"}}");
        openExpectingFailure(dir, "shard name '../../etc/passwd' is not a plain file name");
        Files.writeString(index, "{\"weight_map\": {\"model.norm.weight\": \"model-00009-of-00009.safetensors\"}}");
        openExpectingFailure(dir, "lists shard 'model-00009-of-00009.safetensors', which does not exist");
        Files.writeString(index, "{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00001.safetensors\"}}");
        try (ModelFile m = ModelFile.open(dir)) {
            assertThat(m.tensors()).containsKey("blk.0.ffn_up.weight");
        }
        Files.delete(index);
        openExpectingFailure(dir, "has neither model.safetensors nor model.safetensors.index.json");
    }

    @Test
    void ggufNamesOfHuggingFaceNames() {
        assertThat(HuggingFaceModel.ggufName("model.embed_tokens.weight")).isEqualTo("token_embd.weight");
        assertThat(HuggingFaceModel.ggufName("lm_head.weight")).isEqualTo("output.weight");
        assertThat(HuggingFaceModel.ggufName("model.norm.weight")).isEqualTo("output_norm.weight");
        assertThat(HuggingFaceModel.ggufName("model.layers.17.self_attn.o_proj.weight")).isEqualTo("blk.17.attn_output.weight");
        assertThat(HuggingFaceModel.ggufName("model.layers.3.self_attn.v_proj.bias")).isEqualTo("blk.3.attn_v.bias");
        assertThat(HuggingFaceModel.ggufName("model.layers.0.post_attention_layernorm.weight")).isEqualTo("blk.0.ffn_norm.weight");
        assertThat(HuggingFaceModel.ggufName("model.layers.0.input_layernorm.weight")).isEqualTo("blk.0.attn_norm.weight");
        assertThat(HuggingFaceModel.ggufName("model.layers.2.mlp.gate_proj.weight")).isEqualTo("blk.2.ffn_gate.weight");
        assertThat(HuggingFaceModel.ggufName("model.layers.2.mlp.unknown.weight")).isNull();
        assertThat(HuggingFaceModel.ggufName("model.layers.x.mlp.up_proj.weight")).isNull();
    }
}
