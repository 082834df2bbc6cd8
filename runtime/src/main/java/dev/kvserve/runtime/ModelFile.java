package dev.kvserve.runtime;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.runtime.gguf.GgufFile;
import dev.kvserve.runtime.safetensors.HuggingFaceModel;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * A model checkpoint seen through GGUF's vocabulary, whatever format it is stored in: GGUF metadata
 * key names and GGUF tensor names, with tensor data memory-mapped (never copied onto the heap). The
 * tensors stay valid until {@link #close()}; touching one afterwards throws
 * {@link IllegalStateException}.
 *
 * <h2>Metadata value types</h2>
 * Keys are GGUF's ({@code general.architecture}, {@code llama.block_count},
 * {@code tokenizer.ggml.tokens}, ...). Values have these Java types:
 * <ul>
 *   <li>every integer scalar (GGUF uint8 ... int64): {@link Long}, holding the exact value; a uint64
 *       above {@code Long.MAX_VALUE} keeps its bit pattern (read it with {@link Long#toUnsignedString});
 *   <li>float32: {@link Float}; float64: {@link Double}; bool: {@link Boolean}; string: {@link String};
 *   <li>arrays are compact Java arrays whose width is the GGUF element width: int8/uint8 →
 *       {@code byte[]}, int16/uint16 → {@code short[]}, int32/uint32 → {@code int[]}, int64/uint64 →
 *       {@code long[]} (unsigned elements keep their bit pattern), float32 → {@code float[]},
 *       float64 → {@code double[]}, bool → {@code boolean[]}, string → {@code String[]}, and an array of
 *       arrays → an unmodifiable {@code List<Object>} of such arrays. Do not modify them: they are shared.
 * </ul>
 * The typed getters ({@link #getInt}, {@link #getFloat}, {@link #getIntArray}, ...) convert between
 * widths and report a missing key or a wrong type as a {@link ModelFormatException}.
 *
 * <h2>Tensors</h2>
 * {@link #tensors()} holds every tensor of the file under its GGUF name ({@code token_embd.weight},
 * {@code blk.0.attn_q.weight}, ...), shape in ggml order ({@code [cols, rows]}), whatever its type.
 * Code that computes with a tensor gets it through {@link #tensor} or {@link #optionalTensor}, which
 * refuse a type without kernels by name. A model with tied embeddings may have no
 * {@code output.weight}: use {@code token_embd.weight} then, as llama.cpp does.
 */
public interface ModelFile extends AutoCloseable {

    /** The GGUF file, or the Hugging Face checkpoint directory. */
    Path path();

    /** Metadata under GGUF key names, in file order; unmodifiable. */
    Map<String, Object> metadata();

    /** Every tensor under its GGUF name, in file order; unmodifiable. */
    Map<String, WeightTensor> tensors();

    /** Unmaps the file(s); tensors obtained from this model must not be used afterwards. */
    @Override
    void close();

    /**
     * Opens a model: a directory or a {@code .safetensors} / {@code .safetensors.index.json} file is
     * read as a Hugging Face checkpoint, any other file as GGUF.
     *
     * @throws ModelFormatException the file is not a usable model (the message names file, tensor, problem)
     * @throws IOException          the file cannot be read at all (missing, no permission)
     */
    static ModelFile open(Path path) throws IOException {
        if (Files.isDirectory(path)) return HuggingFaceModel.open(path);
        String name = path.getFileName() == null ? "" : path.getFileName().toString();
        if (name.endsWith(".safetensors") || name.endsWith(".safetensors.index.json")) {
            return HuggingFaceModel.open(path);
        }
        return GgufFile.open(path);
    }

    // ---- tensors for compute ----

    /** The tensor {@code name}, checked to be present and of a type the kernels implement. */
    default WeightTensor tensor(String name) {
        WeightTensor t = tensors().get(name);
        if (t == null) throw new ModelFormatException(path(), name, "the model has no such tensor");
        return requireSupported(t);
    }

    /** Like {@link #tensor} for tensors a model may leave out (biases, {@code output.weight}). */
    default Optional<WeightTensor> optionalTensor(String name) {
        WeightTensor t = tensors().get(name);
        return t == null ? Optional.empty() : Optional.of(requireSupported(t));
    }

    private WeightTensor requireSupported(WeightTensor t) {
        if (!t.type().supported) {
            String supported = Arrays.stream(GgmlType.values()).filter(g -> g.supported)
                    .map(Enum::name).collect(Collectors.joining(", "));
            throw new ModelFormatException(path(), t.name(), "has type " + t.type()
                    + ", which KVServe has no kernels for (supported: " + supported + ")");
        }
        return t;
    }

    // ---- typed metadata ----

    default boolean has(String key) {
        return metadata().containsKey(key);
    }

    /** {@code general.architecture}, e.g. "llama" or "qwen2": the prefix of the hyper-parameter keys. */
    default String architecture() {
        return getString("general.architecture");
    }

    /**
     * Whether Q and K rotate with the NeoX "rotate half" layout rather than adjacent pairs:
     * {@code kvserve.rope.neox} when the file says (Hugging Face checkpoints do), else the layout
     * llama.cpp uses for the architecture (qwen2 and kin rotate halves, llama adjacent pairs).
     */
    default boolean ropeNeox() {
        if (has("kvserve.rope.neox")) return getBoolean("kvserve.rope.neox", false);
        return NEOX_ARCHITECTURES.contains(getString("general.architecture", ""));
    }

    /** Architectures llama.cpp runs with {@code LLAMA_ROPE_TYPE_NEOX}. */
    Set<String> NEOX_ARCHITECTURES = Set.of("qwen", "qwen2", "qwen2moe", "qwen3", "qwen3moe",
            "phi2", "phi3", "gemma", "gemma2", "gemma3", "gptneox", "stablelm", "starcoder2", "falcon",
            "olmo2", "exaone");

    default String getString(String key) {
        return as(key, String.class, "a string");
    }

    default String getString(String key, String defaultValue) {
        return has(key) ? getString(key) : defaultValue;
    }

    default boolean getBoolean(String key, boolean defaultValue) {
        return has(key) ? as(key, Boolean.class, "a bool") : defaultValue;
    }

    default long getLong(String key) {
        Object v = require(key);
        if (v instanceof Long l) return l;
        throw wrongType(key, v, "an integer");
    }

    default long getLong(String key, long defaultValue) {
        return has(key) ? getLong(key) : defaultValue;
    }

    default int getInt(String key) {
        long v = getLong(key);
        if (v != (int) v) {
            throw new ModelFormatException(path(), null, "metadata key '" + key + "' = " + v + " does not fit in an int");
        }
        return (int) v;
    }

    default int getInt(String key, int defaultValue) {
        return has(key) ? getInt(key) : defaultValue;
    }

    /** A float or double (narrowed), or an integer (converted): GGUF writers are not consistent. */
    default float getFloat(String key) {
        Object v = require(key);
        if (v instanceof Number n) return n.floatValue();
        throw wrongType(key, v, "a number");
    }

    default float getFloat(String key, float defaultValue) {
        return has(key) ? getFloat(key) : defaultValue;
    }

    default String[] getStringArray(String key) {
        return as(key, String[].class, "an array of strings");
    }

    /** An array of float32 (as is) or float64 (narrowed). */
    default float[] getFloatArray(String key) {
        Object v = require(key);
        if (v instanceof float[] f) return f;
        if (v instanceof double[] d) {
            float[] f = new float[d.length];
            for (int i = 0; i < d.length; i++) f[i] = (float) d[i];
            return f;
        }
        throw wrongType(key, v, "an array of floats");
    }

    /** An array of any integer type; 64-bit elements must fit in an int. */
    default int[] getIntArray(String key) {
        Object v = require(key);
        switch (v) {
            case int[] i -> {
                return i;
            }
            case byte[] b -> {
                int[] out = new int[b.length];
                for (int i = 0; i < b.length; i++) out[i] = b[i];
                return out;
            }
            case short[] s -> {
                int[] out = new int[s.length];
                for (int i = 0; i < s.length; i++) out[i] = s[i];
                return out;
            }
            case long[] l -> {
                int[] out = new int[l.length];
                for (int i = 0; i < l.length; i++) {
                    if (l[i] != (int) l[i]) {
                        throw new ModelFormatException(path(), null, "metadata key '" + key + "' element " + i
                                + " = " + l[i] + " does not fit in an int");
                    }
                    out[i] = (int) l[i];
                }
                return out;
            }
            default -> throw wrongType(key, v, "an array of integers");
        }
    }

    private Object require(String key) {
        Object v = metadata().get(key);
        if (v == null) throw new ModelFormatException(path(), null, "metadata key '" + key + "' is missing");
        return v;
    }

    private <T> T as(String key, Class<T> type, String expected) {
        Object v = require(key);
        if (!type.isInstance(v)) throw wrongType(key, v, expected);
        return type.cast(v);
    }

    private ModelFormatException wrongType(String key, Object v, String expected) {
        return new ModelFormatException(path(), null, "metadata key '" + key + "' is a "
                + v.getClass().getSimpleName() + ", expected " + expected);
    }
}
