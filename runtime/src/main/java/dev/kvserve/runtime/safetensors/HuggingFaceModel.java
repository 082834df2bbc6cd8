package dev.kvserve.runtime.safetensors;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.runtime.ModelFile;
import dev.kvserve.runtime.ModelFormatException;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A Hugging Face checkpoint directory ({@code config.json} plus {@code model.safetensors}, or shards
 * listed in {@code model.safetensors.index.json}) presented as if it were the GGUF that llama.cpp's
 * converter would make of it: GGUF tensor names, ggml-order shapes (a row-major {@code [out, in]}
 * matrix is ggml {@code [in, out]}, the same bytes) and GGUF metadata keys. Tensors are slices of
 * the mapped shards; nothing is copied.
 *
 * <p>One difference from a converted GGUF is deliberate: Q and K are <em>not</em> permuted from the
 * rotate-half layout Hugging Face trains with. Instead {@code kvserve.rope.neox = true} tells the
 * decoder to apply NeoX-style RoPE, which gives the same attention scores.
 *
 * <p>Extra metadata: {@code kvserve.rope.neox}, {@code kvserve.tie_word_embeddings},
 * {@code kvserve.hf.architecture} (e.g. "LlamaForCausalLM"), {@code kvserve.hf.tokenizer_json} and
 * {@code kvserve.hf.tokenizer_config} (absolute paths, present when the files are), and
 * {@code kvserve.hf.eos_token_ids} (int[]) when config.json lists several end tokens.
 */
public final class HuggingFaceModel implements ModelFile {

    public static final String CONFIG = "config.json";
    public static final String SINGLE_WEIGHTS = "model.safetensors";
    public static final String SHARD_INDEX = "model.safetensors.index.json";

    /** Hugging Face architecture class → GGUF architecture. */
    private static final Map<String, String> ARCHITECTURES = Map.of(
            "LlamaForCausalLM", "llama",
            "MistralForCausalLM", "llama",
            "Qwen2ForCausalLM", "qwen2");

    private static final Map<String, String> GLOBAL_NAMES = Map.of(
            "model.embed_tokens.weight", "token_embd.weight",
            "model.norm.weight", "output_norm.weight",
            "lm_head.weight", "output.weight");

    private static final Map<String, String> LAYER_NAMES = Map.ofEntries(
            Map.entry("input_layernorm.weight", "attn_norm.weight"),
            Map.entry("self_attn.q_proj.weight", "attn_q.weight"),
            Map.entry("self_attn.q_proj.bias", "attn_q.bias"),
            Map.entry("self_attn.k_proj.weight", "attn_k.weight"),
            Map.entry("self_attn.k_proj.bias", "attn_k.bias"),
            Map.entry("self_attn.v_proj.weight", "attn_v.weight"),
            Map.entry("self_attn.v_proj.bias", "attn_v.bias"),
            Map.entry("self_attn.o_proj.weight", "attn_output.weight"),
            Map.entry("self_attn.o_proj.bias", "attn_output.bias"),
            Map.entry("post_attention_layernorm.weight", "ffn_norm.weight"),
            Map.entry("mlp.gate_proj.weight", "ffn_gate.weight"),
            Map.entry("mlp.gate_proj.bias", "ffn_gate.bias"),
            Map.entry("mlp.up_proj.weight", "ffn_up.weight"),
            Map.entry("mlp.up_proj.bias", "ffn_up.bias"),
            Map.entry("mlp.down_proj.weight", "ffn_down.weight"),
            Map.entry("mlp.down_proj.bias", "ffn_down.bias"));

    private static final Pattern LAYER = Pattern.compile("model\\.layers\\.(\\d+)\\.(.+)");
    private static final Pattern BLOCK = Pattern.compile("blk\\.(\\d+)\\..+");

    private final Path directory;
    private final Arena arena;
    private final Map<String, Object> metadata;
    private final Map<String, WeightTensor> tensors;
    private final List<Path> shards;
    private boolean closed;

    private HuggingFaceModel(Path directory, Arena arena, Map<String, Object> metadata, Map<String, WeightTensor> tensors,
                             List<Path> shards) {
        this.directory = directory;
        this.arena = arena;
        this.metadata = Collections.unmodifiableMap(metadata);
        this.tensors = Collections.unmodifiableMap(tensors);
        this.shards = List.copyOf(shards);
    }

    /**
     * Opens a checkpoint given its directory, or one of its {@code .safetensors} files (then only
     * that file is read), or its {@code model.safetensors.index.json}.
     */
    public static HuggingFaceModel open(Path path) throws IOException {
        Path directory;
        List<Path> weightFiles;
        if (Files.isDirectory(path)) {
            directory = path;
            if (Files.isRegularFile(path.resolve(SINGLE_WEIGHTS))) {
                weightFiles = List.of(path.resolve(SINGLE_WEIGHTS));
            } else if (Files.isRegularFile(path.resolve(SHARD_INDEX))) {
                weightFiles = readShardIndex(path.resolve(SHARD_INDEX));
            } else {
                throw new ModelFormatException(path, null, "has neither " + SINGLE_WEIGHTS + " nor " + SHARD_INDEX);
            }
        } else {
            if (!Files.exists(path)) throw new NoSuchFileException(path.toString());
            directory = path.toAbsolutePath().getParent();
            weightFiles = path.getFileName().toString().endsWith(".index.json") ? readShardIndex(path) : List.of(path);
        }
        Path configPath = directory.resolve(CONFIG);
        if (!Files.isRegularFile(configPath)) {
            throw new ModelFormatException(directory, null, "has no " + CONFIG + " beside its weights");
        }
        JsonNode config = readJson(configPath);
        Map<String, Object> metadata = new LinkedHashMap<>();
        Config c = translateConfig(configPath, config, directory, metadata);

        Arena arena = Arena.ofShared();
        try {
            List<SafetensorsFile> files = new ArrayList<>();
            for (Path f : weightFiles) files.add(SafetensorsFile.open(f, arena));
            Map<String, WeightTensor> tensors = mapTensors(directory, files, c, arena);
            return new HuggingFaceModel(directory, arena, metadata, tensors, weightFiles);
        } catch (IOException | RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    /**
     * The GGUF name of a Hugging Face tensor name ({@code model.layers.3.mlp.up_proj.weight} →
     * {@code blk.3.ffn_up.weight}), or null when GGUF has none.
     */
    public static String ggufName(String hfName) {
        String global = GLOBAL_NAMES.get(hfName);
        if (global != null) return global;
        Matcher m = LAYER.matcher(hfName);
        if (!m.matches()) return null;
        String suffix = LAYER_NAMES.get(m.group(2));
        return suffix == null ? null : "blk." + Integer.parseInt(m.group(1)) + "." + suffix;
    }

    @Override
    public Path path() {
        return directory;
    }

    /** The safetensors files the tensors come from. */
    public List<Path> weightFiles() {
        return shards;
    }

    @Override
    public Map<String, Object> metadata() {
        return metadata;
    }

    @Override
    public Map<String, WeightTensor> tensors() {
        return tensors;
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            arena.close();
        }
    }

    @Override
    public String toString() {
        return directory + " (Hugging Face " + metadata.get("kvserve.hf.architecture") + ", " + tensors.size() + " tensors)";
    }

    // ---- shards ----

    private static List<Path> readShardIndex(Path index) throws IOException {
        JsonNode root = readJson(index);
        JsonNode weightMap = root.get("weight_map");
        if (weightMap == null || !weightMap.isObject()) throw new ModelFormatException(index, null, "has no weight_map object");
        Set<String> names = new LinkedHashSet<>();
        for (Map.Entry<String, JsonNode> e : weightMap.properties()) {
            if (!e.getValue().isTextual()) throw new ModelFormatException(index, e.getKey(), "weight_map value is not a file name");
            names.add(e.getValue().textValue());
        }
        if (names.isEmpty()) throw new ModelFormatException(index, null, "weight_map is empty");
        Path directory = index.toAbsolutePath().getParent();
        List<Path> shards = new ArrayList<>();
        for (String name : names) {
            // A shard must sit beside the index: a name with a path in it could point anywhere.
            if (name.contains("/") || name.contains("\\") || name.equals("..") || name.equals(".") || name.isEmpty()) {
                throw new ModelFormatException(index, null, "shard name '" + name + "' is not a plain file name");
            }
            Path shard = directory.resolve(name);
            if (!Files.isRegularFile(shard)) throw new ModelFormatException(index, null, "lists shard '" + name + "', which does not exist");
            shards.add(shard);
        }
        return shards;
    }

    private static JsonNode readJson(Path file) throws IOException {
        try {
            JsonNode node = SafetensorsFile.JSON.readTree(Files.readAllBytes(file));
            if (node == null || !node.isObject()) throw new ModelFormatException(file, null, "is not a JSON object");
            return node;
        } catch (JacksonException e) {
            throw new ModelFormatException(file, null, "is not valid JSON: " + e.getOriginalMessage(), e);
        }
    }

    // ---- tensors ----

    private static Map<String, WeightTensor> mapTensors(Path directory, List<SafetensorsFile> files, Config c, Arena arena) {
        Map<String, WeightTensor> byGgufName = new LinkedHashMap<>();
        Map<String, String> hfNameOf = new LinkedHashMap<>();
        for (SafetensorsFile file : files) {
            for (SafetensorsFile.Tensor t : file.tensors().values()) {
                // Older checkpoints store the RoPE frequencies as a buffer; they follow from the config.
                if (t.name().endsWith(".rotary_emb.inv_freq")) continue;
                String name = ggufName(t.name());
                if (name == null) {
                    throw new ModelFormatException(file.path(), t.name(), "has no GGUF counterpart: KVServe does not know this weight");
                }
                if (t.type() == null) {
                    throw new ModelFormatException(file.path(), t.name(), "has dtype " + t.dtype() + ", which has no ggml counterpart");
                }
                if (hfNameOf.containsKey(name)) {
                    throw new ModelFormatException(file.path(), t.name(), "is stored twice (also in another shard)");
                }
                hfNameOf.put(name, t.name());
                byGgufName.put(name, new WeightTensor(name, t.type(), reversed(t.shape()), t.data()));
            }
        }
        // safetensors drops shared tensors and records "dropped name -> kept name" in __metadata__.
        for (SafetensorsFile file : files) {
            for (Map.Entry<String, String> alias : file.metadata().entrySet()) {
                String name = ggufName(alias.getKey());
                String target = ggufName(alias.getValue());
                if (name != null && target != null && !byGgufName.containsKey(name) && byGgufName.containsKey(target)) {
                    byGgufName.put(name, renamed(byGgufName.get(target), name));
                }
            }
        }
        if (!byGgufName.containsKey("token_embd.weight") && c.tiedEmbeddings && byGgufName.containsKey("output.weight")) {
            byGgufName.put("token_embd.weight", renamed(byGgufName.get("output.weight"), "token_embd.weight"));
        }
        if (!byGgufName.containsKey("token_embd.weight")) {
            throw new ModelFormatException(directory, "model.embed_tokens.weight", "is missing (and no tied lm_head.weight stands in)");
        }
        if (!byGgufName.containsKey("output.weight") && !c.tiedEmbeddings) {
            throw new ModelFormatException(directory, "lm_head.weight", "is missing and config.json does not tie it to the embeddings");
        }
        if (c.ropeFactors != null) {
            MemorySegment factors = arena.allocate((long) c.ropeFactors.length * Float.BYTES, 64);
            MemorySegment.copy(c.ropeFactors, 0, factors, ValueLayout.JAVA_FLOAT, 0, c.ropeFactors.length);
            byGgufName.put("rope_freqs.weight", new WeightTensor("rope_freqs.weight", GgmlType.F32,
                    new long[] {c.ropeFactors.length}, factors));
        }
        // GGUF order: the model-wide tensors, then the blocks in numeric order (not "blk.10" before "blk.2").
        List<String> names = new ArrayList<>(byGgufName.keySet());
        List<String> globalOrder = List.of("token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight");
        names.sort(Comparator.comparingInt(HuggingFaceModel::blockIndex).thenComparingInt(globalOrder::indexOf));
        Map<String, WeightTensor> ordered = new LinkedHashMap<>();
        for (String name : names) ordered.put(name, byGgufName.get(name));
        return ordered;
    }

    private static int blockIndex(String ggufName) {
        Matcher m = BLOCK.matcher(ggufName);
        return m.matches() ? Integer.parseInt(m.group(1)) : -1;
    }

    private static long[] reversed(long[] shape) {
        if (shape.length == 0) return new long[] {1};
        long[] r = new long[shape.length];
        for (int i = 0; i < shape.length; i++) r[i] = shape[shape.length - 1 - i];
        return r;
    }

    private static WeightTensor renamed(WeightTensor t, String name) {
        return new WeightTensor(name, t.type(), t.shape(), t.data());
    }

    // ---- config.json ----

    /** What the tensor mapping needs to know from config.json. */
    private record Config(boolean tiedEmbeddings, float[] ropeFactors) {}

    private static Config translateConfig(Path file, JsonNode config, Path directory, Map<String, Object> md) {
        String hfArchitecture = hfArchitecture(file, config);
        String arch = ARCHITECTURES.get(hfArchitecture);
        if (arch == null) {
            throw new ModelFormatException(file, null, "architecture " + hfArchitecture + " is not supported (supported: "
                    + String.join(", ", new java.util.TreeSet<>(ARCHITECTURES.keySet())) + ")");
        }
        long hidden = positive(file, config, "hidden_size", null);
        long layers = positive(file, config, "num_hidden_layers", null);
        long heads = positive(file, config, "num_attention_heads", null);
        long kvHeads = positive(file, config, "num_key_value_heads", heads);
        long ffn = positive(file, config, "intermediate_size", null);
        long vocab = positive(file, config, "vocab_size", null);
        long context = positive(file, config, "max_position_embeddings", arch.equals("qwen2") ? 32768L : 2048L);
        if (!config.hasNonNull("head_dim") && hidden % heads != 0) {
            throw new ModelFormatException(file, null, "hidden_size " + hidden + " is not a multiple of num_attention_heads " + heads);
        }
        long headDim = positive(file, config, "head_dim", hidden / heads);
        if (heads % kvHeads != 0) {
            throw new ModelFormatException(file, null, "num_attention_heads " + heads + " is not a multiple of num_key_value_heads " + kvHeads);
        }
        float ropeTheta = (float) number(file, config, "rope_theta", 10000.0);
        float rmsEps = (float) number(file, config, "rms_norm_eps", 1e-6);
        boolean tied = config.path("tie_word_embeddings").asBoolean(false);

        md.put("general.architecture", arch);
        md.put("general.name", directory.getFileName() == null ? hfArchitecture : directory.getFileName().toString());
        md.put(arch + ".vocab_size", vocab);
        md.put(arch + ".context_length", context);
        md.put(arch + ".embedding_length", hidden);
        md.put(arch + ".block_count", layers);
        md.put(arch + ".feed_forward_length", ffn);
        md.put(arch + ".attention.head_count", heads);
        md.put(arch + ".attention.head_count_kv", kvHeads);
        md.put(arch + ".attention.key_length", headDim);
        md.put(arch + ".attention.value_length", headDim);
        md.put(arch + ".rope.dimension_count", headDim);
        md.put(arch + ".rope.freq_base", ropeTheta);
        md.put(arch + ".attention.layer_norm_rms_epsilon", rmsEps);
        float[] ropeFactors = ropeScaling(file, config, arch, md, ropeTheta, (int) headDim);
        tokenId(file, config, "bos_token_id", "tokenizer.ggml.bos_token_id", md);
        tokenId(file, config, "pad_token_id", "tokenizer.ggml.padding_token_id", md);
        JsonNode eos = config.get("eos_token_id");
        if (eos != null && eos.isArray() && !eos.isEmpty()) {
            int[] ids = new int[eos.size()];
            for (int i = 0; i < ids.length; i++) {
                if (!eos.get(i).canConvertToInt() || !eos.get(i).isIntegralNumber()) {
                    throw new ModelFormatException(file, null, "eos_token_id[" + i + "] is not an integer");
                }
                ids[i] = eos.get(i).intValue();
            }
            md.put("tokenizer.ggml.eos_token_id", (long) ids[0]);
            md.put("kvserve.hf.eos_token_ids", ids);
        } else {
            tokenId(file, config, "eos_token_id", "tokenizer.ggml.eos_token_id", md);
        }
        md.put("kvserve.rope.neox", true);
        md.put("kvserve.tie_word_embeddings", tied);
        md.put("kvserve.hf.architecture", hfArchitecture);
        Path tokenizerJson = directory.resolve("tokenizer.json");
        if (Files.isRegularFile(tokenizerJson)) md.put("kvserve.hf.tokenizer_json", tokenizerJson.toAbsolutePath().toString());
        Path tokenizerConfig = directory.resolve("tokenizer_config.json");
        if (Files.isRegularFile(tokenizerConfig)) md.put("kvserve.hf.tokenizer_config", tokenizerConfig.toAbsolutePath().toString());
        return new Config(tied, ropeFactors);
    }

    private static String hfArchitecture(Path file, JsonNode config) {
        JsonNode architectures = config.get("architectures");
        if (architectures != null && architectures.isArray() && !architectures.isEmpty() && architectures.get(0).isTextual()) {
            return architectures.get(0).textValue();
        }
        throw new ModelFormatException(file, null, "has no \"architectures\" list naming the model class");
    }

    /**
     * Linear scaling becomes GGUF's {@code rope.scaling.*} keys. Llama 3's frequency-dependent scaling
     * becomes the {@code rope_freqs.weight} divisors that llama.cpp's converter computes, returned here.
     */
    private static float[] ropeScaling(Path file, JsonNode config, String arch, Map<String, Object> md, float theta, int headDim) {
        JsonNode scaling = config.get("rope_scaling");
        if (scaling == null || scaling.isNull()) return null;
        if (!scaling.isObject()) throw new ModelFormatException(file, null, "rope_scaling is not an object");
        String type = scaling.path("rope_type").asText(scaling.path("type").asText(""));
        switch (type) {
            case "linear" -> {
                double factor = number(file, scaling, "factor", null);
                md.put(arch + ".rope.scaling.type", "linear");
                md.put(arch + ".rope.scaling.factor", (float) factor);
                return null;
            }
            case "llama3" -> {
                double factor = number(file, scaling, "factor", 8.0);
                double lowFreqFactor = number(file, scaling, "low_freq_factor", 1.0);
                double highFreqFactor = number(file, scaling, "high_freq_factor", 4.0);
                double oldContext = number(file, scaling, "original_max_position_embeddings", 8192.0);
                return llama3RopeFactors(theta, headDim, factor, lowFreqFactor, highFreqFactor, oldContext);
            }
            case "default", "" -> {
                return null;
            }
            default -> throw new ModelFormatException(file, null, "rope_scaling type '" + type + "' is not supported (linear and llama3 are)");
        }
    }

    /**
     * Per-frequency divisors of the rotation angle for Llama 3 RoPE scaling, computed as llama.cpp's
     * {@code convert_hf_to_gguf.py} computes {@code rope_freqs}: high frequencies keep their angle,
     * low ones are slowed by {@code factor}, and the band between is interpolated smoothly.
     */
    public static float[] llama3RopeFactors(float theta, int headDim, double factor, double lowFreqFactor,
                                            double highFreqFactor, double oldContext) {
        float[] factors = new float[headDim / 2];
        double lowFreqWavelen = oldContext / lowFreqFactor;
        double highFreqWavelen = oldContext / highFreqFactor;
        for (int i = 0; i < factors.length; i++) {
            // float32 as the converter computes it with torch
            float freq = (float) (1.0 / Math.pow(theta, (float) (2 * i) / headDim));
            double wavelen = 2 * Math.PI / freq;
            if (wavelen < highFreqWavelen) {
                factors[i] = 1f;
            } else if (wavelen > lowFreqWavelen) {
                factors[i] = (float) factor;
            } else {
                double smooth = (oldContext / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                factors[i] = (float) (1 / ((1 - smooth) / factor + smooth));
            }
        }
        return factors;
    }

    private static void tokenId(Path file, JsonNode config, String hfKey, String ggufKey, Map<String, Object> md) {
        JsonNode v = config.get(hfKey);
        if (v == null || v.isNull()) return;
        if (!v.isIntegralNumber() || !v.canConvertToInt()) throw new ModelFormatException(file, null, hfKey + " is not an integer");
        md.put(ggufKey, (long) v.intValue());
    }

    private static long positive(Path file, JsonNode config, String key, Long defaultValue) {
        JsonNode v = config.get(key);
        if (v == null || v.isNull()) {
            if (defaultValue == null) throw new ModelFormatException(file, null, "has no " + key);
            return defaultValue;
        }
        if (!v.isIntegralNumber() || !v.canConvertToInt() || v.intValue() <= 0) {
            throw new ModelFormatException(file, null, key + " = " + v + " is not a positive integer");
        }
        return v.intValue();
    }

    private static double number(Path file, JsonNode config, String key, Double defaultValue) {
        JsonNode v = config.get(key);
        if (v == null || v.isNull()) {
            if (defaultValue == null) throw new ModelFormatException(file, null, "has no " + key);
            return defaultValue;
        }
        if (!v.isNumber() || !Double.isFinite(v.doubleValue())) throw new ModelFormatException(file, null, key + " = " + v + " is not a number");
        return v.doubleValue();
    }
}
