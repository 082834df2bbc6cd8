package dev.kvserve.runtime.model;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.KvGeometry;
import java.util.Map;

/**
 * Hyper-parameters of a Llama-family decoder, read from GGUF metadata keys (Hugging Face
 * checkpoints are presented under the same keys by the model-file reader).
 */
public record ModelConfig(
        String architecture,
        String name,
        int dim,
        int layers,
        int heads,
        int kvHeads,
        int headDim,
        int ffnDim,
        int vocabSize,
        int contextLength,
        float rmsEps,
        RopeConfig rope,
        boolean qkvBias) {

    /** Architectures whose decoder this runtime implements (Mistral is written as llama in GGUF). */
    public static final java.util.List<String> SUPPORTED = java.util.List.of("llama", "qwen2", "mistral");

    public static ModelConfig fromMetadata(Map<String, Object> md, int vocabFromTensors, String fallbackName) {
        return fromMetadata(md, vocabFromTensors, fallbackName, null);
    }

    /** @param ropeFreqFactors Llama 3 per-pair frequency divisors ({@code rope_freqs.weight}), or null */
    public static ModelConfig fromMetadata(Map<String, Object> md, int vocabFromTensors, String fallbackName,
                                           float[] ropeFreqFactors) {
        String arch = string(md, "general.architecture", null);
        if (arch == null) throw new IllegalArgumentException("model has no general.architecture");
        if (!SUPPORTED.contains(arch)) {
            throw new IllegalArgumentException("unsupported architecture '" + arch + "'; supported: " + SUPPORTED);
        }
        int dim = integer(md, arch + ".embedding_length", -1);
        int layers = integer(md, arch + ".block_count", -1);
        int heads = integer(md, arch + ".attention.head_count", -1);
        if (dim <= 0 || layers <= 0 || heads <= 0) {
            throw new IllegalArgumentException("model metadata lacks " + arch + ".embedding_length / block_count / attention.head_count");
        }
        int kvHeads = integer(md, arch + ".attention.head_count_kv", heads);
        int headDim = integer(md, arch + ".attention.key_length", dim / heads);
        int ffn = integer(md, arch + ".feed_forward_length", -1);
        int ctx = integer(md, arch + ".context_length", 2048);
        float eps = (float) real(md, arch + ".attention.layer_norm_rms_epsilon", 1e-5);
        float base = (float) real(md, arch + ".rope.freq_base", 10000.0);
        int ropeDims = integer(md, arch + ".rope.dimension_count", headDim);
        // Linear RoPE scaling: GGUF stores the factor (positions are divided by it).
        double factor = 1.0;
        String scalingType = string(md, arch + ".rope.scaling.type", null);
        if (md.containsKey(arch + ".rope.scale_linear")) factor = real(md, arch + ".rope.scale_linear", 1.0);
        if (scalingType == null || scalingType.equals("linear")) {
            factor = real(md, arch + ".rope.scaling.factor", factor);
        } else if (!scalingType.equals("none")) {
            throw new IllegalArgumentException("unsupported RoPE scaling '" + scalingType + "' (supported: none, linear)");
        }
        // GGUF "llama" weights are permuted to adjacent-pair RoPE; Qwen2 and HF checkpoints rotate halves.
        boolean neox = arch.equals("qwen2") || Boolean.TRUE.equals(md.get("kvserve.rope.neox"));
        String name = string(md, "general.name", fallbackName);
        return new ModelConfig(arch, name, dim, layers, heads, kvHeads, headDim, ffn, vocabFromTensors, ctx, eps,
                new RopeConfig(ropeDims, base, (float) (1.0 / factor), neox, ropeFreqFactors), arch.equals("qwen2"));
    }

    public KvGeometry kvGeometry() {
        return new KvGeometry(layers, heads, kvHeads, headDim, contextLength, rope);
    }

    static String string(Map<String, Object> md, String key, String dflt) {
        Object v = md.get(key);
        return v == null ? dflt : v.toString();
    }

    static int integer(Map<String, Object> md, String key, int dflt) {
        Object v = md.get(key);
        if (v == null) return dflt;
        if (v instanceof Number n) return Math.toIntExact(n.longValue());
        throw new IllegalArgumentException("metadata " + key + " should be an integer, found " + v.getClass().getSimpleName());
    }

    static double real(Map<String, Object> md, String key, double dflt) {
        Object v = md.get(key);
        if (v == null) return dflt;
        if (v instanceof Number n) return n.doubleValue();
        throw new IllegalArgumentException("metadata " + key + " should be a number, found " + v.getClass().getSimpleName());
    }
}
