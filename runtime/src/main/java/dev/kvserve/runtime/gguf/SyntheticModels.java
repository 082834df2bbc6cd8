package dev.kvserve.runtime.gguf;

import dev.kvserve.kernels.GgmlQuantize;
import dev.kvserve.kernels.GgmlType;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Writes GGUF files with the exact shapes and hyper-parameters of real models but seeded random
 * weights (normal, standard deviation 0.02; norms 1), so that memory, speed and KV-cache behaviour
 * can be measured at real sizes without the real weights. The output is an ordinary llama.cpp-style
 * GGUF, including a SentencePiece-style ("llama") vocabulary of the model's size: {@code <unk>},
 * {@code <s>}, {@code </s>}, the 256 byte tokens and then made-up printable pieces.
 *
 * <p>Weights are generated and written a chunk of rows at a time, so a 7B file needs a few MB of heap.
 * Each tensor draws from its own generator seeded by the seed and the tensor's name, so the same seed
 * gives the same bytes.
 */
public final class SyntheticModels {

    public static final float WEIGHT_STD = 0.02f;
    private static final int CHUNK_VALUES = 1 << 20;

    private SyntheticModels() {}

    /** Llama 3's frequency-dependent RoPE scaling, written as {@code rope_freqs.weight} as llama.cpp does. */
    public record Llama3Rope(double factor, double lowFreqFactor, double highFreqFactor, int originalContext) {}

    /**
     * The shape of a Llama-family decoder.
     *
     * @param architecture   GGUF architecture: "llama" or "qwen2"
     * @param tiedEmbeddings no {@code output.weight}: the output projection reuses {@code token_embd.weight}
     * @param qkvBias        {@code attn_q/k/v.bias} exist (Qwen2)
     * @param llama3Rope     null unless the model uses Llama 3 RoPE scaling
     */
    public record Spec(String name, String architecture, int embeddingLength, int blockCount, int headCount,
                       int headCountKv, int headDim, int feedForwardLength, int vocabSize, int contextLength,
                       float ropeFreqBase, float rmsEpsilon, boolean tiedEmbeddings, boolean qkvBias,
                       Llama3Rope llama3Rope) {

        public Spec {
            if (embeddingLength <= 0 || blockCount <= 0 || headCount <= 0 || headCountKv <= 0 || headDim <= 0
                    || feedForwardLength <= 0 || contextLength <= 0) {
                throw new IllegalArgumentException(name + ": every dimension must be positive");
            }
            if (headCount % headCountKv != 0) {
                throw new IllegalArgumentException(name + ": " + headCount + " heads are not a multiple of " + headCountKv + " KV heads");
            }
            if (headDim % 2 != 0) throw new IllegalArgumentException(name + ": RoPE needs an even head size, not " + headDim);
            if (vocabSize < FIRST_FILLER_TOKEN) {
                throw new IllegalArgumentException(name + ": the vocabulary needs at least " + FIRST_FILLER_TOKEN
                        + " tokens (3 specials and 256 bytes), not " + vocabSize);
            }
        }

        /** GGUF name → ggml-order shape of every tensor, in file order. */
        public Map<String, long[]> tensorShapes() {
            long h = embeddingLength;
            long q = (long) headCount * headDim;
            long kv = (long) headCountKv * headDim;
            Map<String, long[]> shapes = new LinkedHashMap<>();
            shapes.put("token_embd.weight", new long[] {h, vocabSize});
            shapes.put("output_norm.weight", new long[] {h});
            if (!tiedEmbeddings) shapes.put("output.weight", new long[] {h, vocabSize});
            if (llama3Rope != null) shapes.put("rope_freqs.weight", new long[] {headDim / 2});
            for (int b = 0; b < blockCount; b++) {
                String p = "blk." + b + ".";
                shapes.put(p + "attn_norm.weight", new long[] {h});
                shapes.put(p + "attn_q.weight", new long[] {h, q});
                if (qkvBias) shapes.put(p + "attn_q.bias", new long[] {q});
                shapes.put(p + "attn_k.weight", new long[] {h, kv});
                if (qkvBias) shapes.put(p + "attn_k.bias", new long[] {kv});
                shapes.put(p + "attn_v.weight", new long[] {h, kv});
                if (qkvBias) shapes.put(p + "attn_v.bias", new long[] {kv});
                shapes.put(p + "attn_output.weight", new long[] {q, h});
                shapes.put(p + "ffn_norm.weight", new long[] {h});
                shapes.put(p + "ffn_gate.weight", new long[] {h, feedForwardLength});
                shapes.put(p + "ffn_up.weight", new long[] {h, feedForwardLength});
                shapes.put(p + "ffn_down.weight", new long[] {feedForwardLength, h});
            }
            return shapes;
        }

        /** Number of weights, as model cards count them (rope_freqs excluded: it is not trained). */
        public long parameterCount() {
            long n = 0;
            for (Map.Entry<String, long[]> e : tensorShapes().entrySet()) {
                if (e.getKey().equals("rope_freqs.weight")) continue;
                long elements = 1;
                for (long d : e.getValue()) elements *= d;
                n += elements;
            }
            return n;
        }
    }

    private static final Llama3Rope LLAMA3_32X = new Llama3Rope(32, 1, 4, 8192);
    private static final Llama3Rope LLAMA3_8X = new Llama3Rope(8, 1, 4, 8192);

    /** Hyper-parameters from each model's published config.json. */
    private static final Map<String, Spec> PRESETS = presets(
            new Spec("tiny", "llama", 64, 2, 4, 2, 16, 128, 320, 256, 10000f, 1e-5f, false, false, null),
            new Spec("smollm2-135m", "llama", 576, 30, 9, 3, 64, 1536, 49152, 8192, 100000f, 1e-5f, true, false, null),
            new Spec("qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 64, 4864, 151936, 32768, 1000000f, 1e-6f, true, true, null),
            new Spec("llama-3.2-1b", "llama", 2048, 16, 32, 8, 64, 8192, 128256, 131072, 500000f, 1e-5f, true, false, LLAMA3_32X),
            new Spec("tinyllama-1.1b", "llama", 2048, 22, 32, 4, 64, 5632, 32000, 2048, 10000f, 1e-5f, false, false, null),
            new Spec("qwen2.5-1.5b", "qwen2", 1536, 28, 12, 2, 128, 8960, 151936, 32768, 1000000f, 1e-6f, true, true, null),
            new Spec("llama-2-7b", "llama", 4096, 32, 32, 32, 128, 11008, 32000, 4096, 10000f, 1e-5f, false, false, null),
            new Spec("mistral-7b-v0.3", "llama", 4096, 32, 32, 8, 128, 14336, 32768, 32768, 1000000f, 1e-5f, false, false, null),
            new Spec("llama-3.1-8b", "llama", 4096, 32, 32, 8, 128, 14336, 128256, 131072, 500000f, 1e-5f, false, false, LLAMA3_8X));

    private static Map<String, Spec> presets(Spec... specs) {
        Map<String, Spec> m = new LinkedHashMap<>();
        for (Spec s : specs) m.put(s.name(), s);
        return m;
    }

    public static List<String> presetNames() {
        return List.copyOf(PRESETS.keySet());
    }

    public static Spec preset(String name) {
        Spec s = PRESETS.get(name);
        if (s == null) throw new IllegalArgumentException("no synthetic preset '" + name + "'; presets: " + String.join(", ", PRESETS.keySet()));
        return s;
    }

    /** The weight types this class can write: those {@link GgmlQuantize} encodes (every type with kernels). */
    public static boolean canWrite(GgmlType type) {
        return switch (type) {
            case F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K -> true;
            default -> false;
        };
    }

    public static void write(Path out, String preset, GgmlType weightType, long seed) throws IOException {
        write(out, preset(preset), weightType, seed);
    }

    /**
     * Writes {@code spec} to {@code out} with matrices (and token_embd) in {@code weightType} and
     * norms, biases and rope_freqs in F32. A matrix whose rows do not divide into the type's blocks is
     * written in llama-quantize's fallback type instead ({@link #fallbackType}: a 576-wide Q4_K
     * matrix becomes Q5_0, as in SmolLM2-135M's Q4_K_M file), or as F16 if that does not fit either.
     */
    public static void write(Path out, Spec spec, GgmlType weightType, long seed) throws IOException {
        if (!canWrite(weightType)) throw new IllegalArgumentException("cannot write weights of type " + weightType);
        try (GgufWriter w = new GgufWriter(out)) {
            String arch = spec.architecture();
            w.putString("general.architecture", arch);
            w.putString("general.name", "synthetic " + spec.name());
            w.putUInt32("general.file_type", fileType(weightType));
            if (weightType.blockSize > 1) w.putUInt32("general.quantization_version", 2);
            w.putUInt32(arch + ".vocab_size", spec.vocabSize());
            w.putUInt32(arch + ".context_length", spec.contextLength());
            w.putUInt32(arch + ".embedding_length", spec.embeddingLength());
            w.putUInt32(arch + ".block_count", spec.blockCount());
            w.putUInt32(arch + ".feed_forward_length", spec.feedForwardLength());
            w.putUInt32(arch + ".attention.head_count", spec.headCount());
            w.putUInt32(arch + ".attention.head_count_kv", spec.headCountKv());
            w.putUInt32(arch + ".attention.key_length", spec.headDim());
            w.putUInt32(arch + ".attention.value_length", spec.headDim());
            w.putUInt32(arch + ".rope.dimension_count", spec.headDim());
            w.putFloat32(arch + ".rope.freq_base", spec.ropeFreqBase());
            w.putFloat32(arch + ".attention.layer_norm_rms_epsilon", spec.rmsEpsilon());
            w.putString("kvserve.synthetic.preset", spec.name());
            w.putUInt64("kvserve.synthetic.seed", seed);
            putLlamaTokenizer(w, spec.vocabSize());

            Map<String, long[]> shapes = spec.tensorShapes();
            Map<String, GgmlType> types = new LinkedHashMap<>();
            for (Map.Entry<String, long[]> e : shapes.entrySet()) {
                long[] shape = e.getValue();
                GgmlType type = shape.length == 1 ? GgmlType.F32 : weightType;
                if (shape[0] % type.blockSize != 0) type = fallbackType(type);
                if (shape[0] % type.blockSize != 0) type = GgmlType.F16;
                types.put(e.getKey(), type);
                w.addTensor(e.getKey(), type, shape);
            }
            for (Map.Entry<String, long[]> e : shapes.entrySet()) {
                String name = e.getKey();
                writeTensor(w, name, types.get(name), e.getValue(), spec, seed);
            }
        }
    }

    private static void writeTensor(GgufWriter w, String name, GgmlType type, long[] shape, Spec spec, long seed) throws IOException {
        if (name.equals("rope_freqs.weight")) {
            Llama3Rope r = spec.llama3Rope();
            float[] factors = dev.kvserve.runtime.safetensors.HuggingFaceModel.llama3RopeFactors(spec.ropeFreqBase(),
                    spec.headDim(), r.factor(), r.lowFreqFactor(), r.highFreqFactor(), r.originalContext());
            w.appendTensorData(name, encode(GgmlType.F32, factors, factors.length, factors.length));
            return;
        }
        boolean norm = name.endsWith("_norm.weight");
        SplittableRandom random = new SplittableRandom(seed ^ (name.hashCode() * 0x9E3779B97F4A7C15L));
        long cols = shape[0];
        long elements = 1;
        for (long d : shape) elements *= d;
        int chunk = (int) Math.max(cols, CHUNK_VALUES / cols * cols);
        float[] values = new float[chunk];
        for (long done = 0; done < elements; ) {
            int n = (int) Math.min(chunk, elements - done);
            for (int i = 0; i < n; i++) values[i] = norm ? 1f : (float) (random.nextGaussian() * WEIGHT_STD);
            w.appendTensorData(name, encode(type, values, n, (int) cols));
            done += n;
        }
    }

    /** {@code n} values (whole rows of {@code cols}) in {@code type}'s storage format, as llama-quantize writes it. */
    static MemorySegment encode(GgmlType type, float[] values, int n, int cols) {
        MemorySegment out = MemorySegment.ofArray(new byte[Math.toIntExact(type.bytesFor(n))]);
        long rowBytes = type.bytesFor(cols);
        for (int r = 0; r < n / cols; r++) GgmlQuantize.quantizeRow(type, values, r * cols, cols, out, r * rowBytes);
        return out;
    }

    /**
     * The block-32 type llama-quantize writes (tensor_type_fallback in llama-quant.cpp) when a row
     * is not a whole number of {@code type}'s 256-value super-blocks; {@code type} itself otherwise.
     */
    public static GgmlType fallbackType(GgmlType type) {
        return switch (type) {
            case Q2_K, Q3_K -> GgmlType.Q4_0;
            case Q4_K -> GgmlType.Q5_0;
            case Q5_K -> GgmlType.Q5_1;
            case Q6_K -> GgmlType.Q8_0;
            case IQ4_XS -> GgmlType.IQ4_NL;
            default -> type;
        };
    }

    /** llama.cpp's {@code llama_ftype} for a file whose matrices are {@code type}. */
    static int fileType(GgmlType type) {
        return switch (type) {
            case F32 -> 0;
            case F16 -> 1;
            case Q4_0 -> 2;
            case Q4_1 -> 3;
            case Q8_0 -> 7;
            case Q5_0 -> 8;
            case Q5_1 -> 9;
            case Q2_K -> 10;
            case Q3_K -> 12;   // Q3_K_M, as Q4_K and Q5_K name their _M mixes
            case Q4_K -> 15;
            case Q5_K -> 17;
            case IQ4_NL -> 25;
            case Q6_K -> 18;
            case BF16 -> 32;
            default -> throw new IllegalArgumentException("no llama ftype for " + type);
        };
    }

    // ---- tokenizer ----

    /** Token type ids of llama.cpp's {@code llama_token_type}. */
    public static final int TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_BYTE = 6;
    /** {@code <unk>}, {@code <s>}, {@code </s>}, then {@code <0x00>}..{@code <0xFF>}. */
    public static final int FIRST_FILLER_TOKEN = 3 + 256;
    /**
     * Filler pieces are every string over this alphabet, shortest first: each piece of two or more
     * characters is then a merge of two shorter pieces, so a SentencePiece tokenizer can reach it.
     */
    private static final String FILLER_ALPHABET =
            "\u2581etaoinshrdlucmfwypvbgkjqxzETAOINSHRDLUCMFWYPVBGKJQXZ0123456789.,!?'\"-:;()";

    /**
     * Puts a SentencePiece-style vocabulary of {@code vocabSize} tokens ({@code tokenizer.ggml.model =
     * llama}) into {@code w}: {@code <unk>}=0, {@code <s>}=1 (BOS), {@code </s>}=2 (EOS), the byte
     * tokens, then printable pieces scored so that earlier (shorter) pieces merge first.
     */
    public static void putLlamaTokenizer(GgufWriter w, int vocabSize) {
        if (vocabSize < FIRST_FILLER_TOKEN) throw new IllegalArgumentException("a llama vocabulary needs at least " + FIRST_FILLER_TOKEN + " tokens");
        String[] tokens = new String[vocabSize];
        float[] scores = new float[vocabSize];
        int[] types = new int[vocabSize];
        tokens[0] = "<unk>";
        types[0] = TOKEN_UNKNOWN;
        tokens[1] = "<s>";
        types[1] = TOKEN_CONTROL;
        tokens[2] = "</s>";
        types[2] = TOKEN_CONTROL;
        for (int b = 0; b < 256; b++) {
            tokens[3 + b] = String.format("<0x%02X>", b);
            types[3 + b] = TOKEN_BYTE;
        }
        List<String> filler = fillerPieces(vocabSize - FIRST_FILLER_TOKEN);
        for (int i = 0; i < filler.size(); i++) {
            int id = FIRST_FILLER_TOKEN + i;
            tokens[id] = filler.get(i);
            scores[id] = -i;
            types[id] = TOKEN_NORMAL;
        }
        w.putString("tokenizer.ggml.model", "llama");
        w.putArray("tokenizer.ggml.tokens", GgufValueType.STRING, tokens);
        w.putArray("tokenizer.ggml.scores", GgufValueType.FLOAT32, scores);
        w.putArray("tokenizer.ggml.token_type", GgufValueType.INT32, types);
        w.putUInt32("tokenizer.ggml.unknown_token_id", 0);
        w.putUInt32("tokenizer.ggml.bos_token_id", 1);
        w.putUInt32("tokenizer.ggml.eos_token_id", 2);
        w.putBool("tokenizer.ggml.add_bos_token", true);
        w.putBool("tokenizer.ggml.add_eos_token", false);
    }

    private static List<String> fillerPieces(int count) {
        int[] alphabet = FILLER_ALPHABET.codePoints().toArray();
        List<String> pieces = new ArrayList<>(count);
        for (int length = 1; pieces.size() < count; length++) {
            int[] digits = new int[length];
            while (pieces.size() < count) {
                StringBuilder piece = new StringBuilder();
                for (int d : digits) piece.appendCodePoint(alphabet[d]);
                pieces.add(piece.toString());
                int i = length - 1;
                while (i >= 0 && ++digits[i] == alphabet.length) digits[i--] = 0;
                if (i < 0) break;
            }
        }
        return pieces;
    }

    /** {@code SyntheticModels <preset> <f32|f16|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|iq4_nl|q2_k|q3_k|q4_k|q5_k|q6_k> <out.gguf> [seed]}. */
    public static void main(String[] args) throws IOException {
        if (args.length < 3) {
            System.err.println("usage: SyntheticModels <preset> <weight type> <out.gguf> [seed]\npresets: " + String.join(", ", presetNames()));
            System.exit(2);
        }
        GgmlType type = GgmlType.valueOf(args[1].toUpperCase(java.util.Locale.ROOT));
        long seed = args.length > 3 ? Long.parseLong(args[3]) : 42;
        write(Path.of(args[2]), args[0], type, seed);
        System.out.println(args[2] + ": " + preset(args[0]).parameterCount() + " parameters as " + type);
    }
}
