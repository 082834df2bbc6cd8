package dev.kvserve.runtime.model;

import dev.kvserve.attention.KvAttention;
import dev.kvserve.attention.PagedAttention;
import dev.kvserve.kvcache.RopeTable;
import dev.kvserve.attention.StepBatch;
import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.quant.ModelIdentity;
import dev.kvserve.runtime.ModelFile;
import dev.kvserve.runtime.tokenizer.Tokenizer;
import dev.kvserve.runtime.tokenizer.Tokenizers;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.BiFunction;

/**
 * A Llama-family decoder (Llama 2/3, Mistral, TinyLlama, SmolLM, Qwen2): embedding, then per layer
 * RMSNorm → QKV (+ Qwen2 biases) → RoPE → grouped-query attention over the KV cache → output
 * projection → residual → RMSNorm → SwiGLU FFN → residual; final RMSNorm and the output head
 * (tied to the embedding when the file has no separate one).
 *
 * <p>One {@link #forward} call is one batched step: the rows of every chunk are stacked so each
 * weight matrix is streamed once per step for all sequences — that is what makes batched decode
 * and prefill cheap. Not thread-safe: one engine thread drives a model.
 */
public final class LlamaModel implements AutoCloseable {

    private final ModelFile file;
    private final ModelConfig config;
    private final Tokenizer tokenizer;
    private final Backend backend;
    private final KvAttention attention;
    private final WeightTensor tokenEmbedding;
    private final WeightTensor outputNorm;
    private final WeightTensor output;
    private final Layer[] layers;
    private final String chatTemplate;
    private volatile ModelIdentity identity;
    private Workspace ws;

    private record Layer(WeightTensor attnNorm, WeightTensor wq, WeightTensor wk, WeightTensor wv, WeightTensor wo,
                         WeightTensor bq, WeightTensor bk, WeightTensor bv,
                         WeightTensor ffnNorm, WeightTensor wGate, WeightTensor wUp, WeightTensor wDown) {}

    private LlamaModel(ModelFile file, ModelConfig config, Tokenizer tokenizer, Backend backend,
                       BiFunction<KvGeometry, Backend, KvAttention> attentionFactory) {
        this.file = file;
        this.config = config;
        this.tokenizer = tokenizer;
        this.backend = backend;
        Map<String, WeightTensor> t = file.tensors();
        this.tokenEmbedding = backend.upload(require(t, "token_embd.weight"));
        this.outputNorm = backend.upload(require(t, "output_norm.weight"));
        WeightTensor out = t.get("output.weight");
        this.output = out == null ? tokenEmbedding : backend.upload(out);
        this.layers = new Layer[config.layers()];
        for (int l = 0; l < config.layers(); l++) {
            String p = "blk." + l + ".";
            layers[l] = new Layer(
                    backend.upload(require(t, p + "attn_norm.weight")),
                    backend.upload(require(t, p + "attn_q.weight")),
                    backend.upload(require(t, p + "attn_k.weight")),
                    backend.upload(require(t, p + "attn_v.weight")),
                    backend.upload(require(t, p + "attn_output.weight")),
                    optional(t, p + "attn_q.bias"), optional(t, p + "attn_k.bias"), optional(t, p + "attn_v.bias"),
                    backend.upload(require(t, p + "ffn_norm.weight")),
                    backend.upload(require(t, p + "ffn_gate.weight")),
                    backend.upload(require(t, p + "ffn_up.weight")),
                    backend.upload(require(t, p + "ffn_down.weight")));
        }
        checkShapes();
        Object template = file.metadata().get("tokenizer.chat_template");
        this.chatTemplate = template == null ? null : template.toString();
        this.attention = attentionFactory.apply(config.kvGeometry(), backend);
    }

    /**
     * Loads a GGUF file or a Hugging Face checkpoint directory onto {@code backend}, attending
     * through the attention implementation that {@code attentionFactory} builds.
     */
    public static LlamaModel load(Path path, Backend backend, BiFunction<KvGeometry, Backend, KvAttention> attentionFactory) {
        ModelFile file;
        try {
            file = ModelFile.open(path);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read model " + path + ": " + e.getMessage(), e);
        }
        try {
            int vocab = require(file.tensors(), "token_embd.weight").rows();
            String fallbackName = path.getFileName().toString().replaceFirst("\\.gguf$", "");
            WeightTensor freqs = file.tensors().get("rope_freqs.weight");
            if (freqs != null && freqs.type() != dev.kvserve.kernels.GgmlType.F32) {
                throw new IllegalArgumentException("rope_freqs.weight must be F32, found " + freqs.type());
            }
            float[] factors = freqs == null ? null
                    : freqs.data().asSlice(0, freqs.elements() * Float.BYTES).toArray(ValueLayout.JAVA_FLOAT);
            ModelConfig config = ModelConfig.fromMetadata(file.metadata(), vocab, fallbackName, factors);
            Tokenizer tokenizer = tokenizerOf(file.metadata());
            return new LlamaModel(file, config, tokenizer, backend, attentionFactory);
        } catch (RuntimeException e) {
            file.close();
            throw e;
        }
    }

    /** Loads a model that attends over the paged KV cache with {@code threads} attention workers. */
    public static LlamaModel load(Path path, Backend backend, int threads) {
        if (!(backend instanceof dev.kvserve.kernels.cpu.CpuBackend)) {
            throw new IllegalArgumentException("paged attention runs on host memory: load the model on the CPU backend ("
                    + backend.name() + " cannot hold the KV cache yet)");
        }
        return load(path, backend, (geometry, b) ->
                new PagedAttention(geometry, new RopeTable(geometry.rope(), geometry.headDim()), threads));
    }

    /** The tokenizer a model file carries: tokenizer.json beside a Hugging Face checkpoint, else GGUF metadata. */
    public static Tokenizer tokenizerOf(Map<String, Object> md) {
        Object json = md.get("kvserve.hf.tokenizer_json");
        if (json != null) {
            Object cfg = md.get("kvserve.hf.tokenizer_config");
            try {
                return Tokenizers.fromHuggingFace(Path.of(json.toString()), cfg == null ? null : Path.of(cfg.toString()));
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read tokenizer " + json + ": " + e.getMessage(), e);
            }
        }
        return Tokenizers.fromGgufMetadata(md);
    }

    public ModelConfig config() { return config; }
    public Tokenizer tokenizer() { return tokenizer; }
    public KvGeometry kvGeometry() { return config.kvGeometry(); }
    public Backend backend() { return backend; }
    public String name() { return config.name(); }
    /** The model's Jinja chat template, or null when the file has none. */
    public String chatTemplate() { return chatTemplate; }
    public Map<String, Object> metadata() { return file.metadata(); }

    /**
     * What a KV calibration file must record to be used with this model: architecture, KV shape, RoPE
     * and the SHA-256 of {@code blk.0.attn_k.weight} as read from the file (computed once). Give it to
     * {@code KvCacheManager} so calibrated policies made for another model are refused.
     */
    public ModelIdentity identity() {
        ModelIdentity id = identity;
        if (id == null) {
            id = ModelIdentity.of(config.architecture(), config.kvGeometry(), file.tensor(ModelIdentity.DEFAULT_HASHED_TENSOR));
            identity = id;
        }
        return id;
    }

    /**
     * Runs one batched step and returns, per chunk, the logits of its last token ({@code float[vocab]})
     * or, with {@code allLogits}, of all its tokens ({@code float[tokens * vocab]}, row-major). Any
     * exception fails the whole step, leaving every cache half written (close them).
     */
    public float[][] forward(List<SequenceChunk> chunks) {
        return run(chunks, false).logits();
    }

    /**
     * One batched step whose chunks fail alone: an exception from one chunk's KV cache (its storage,
     * its policy's hooks, its attention) is reported for that chunk, whose cache is left half written
     * and not advanced (close it), while every other chunk completes with the logits it would have had
     * without the failed one. Exceptions nobody can be blamed for (a token id outside the vocabulary, a
     * backend failure) still fail the whole step, leaving every cache half written.
     */
    public StepResult step(List<SequenceChunk> chunks) {
        return run(chunks, true);
    }

    /**
     * What {@link #step} computed: {@code logits[i]} as {@link #forward} returns them, or null when
     * chunk {@code i} failed, and then {@code faults[i]} says why.
     */
    public record StepResult(float[][] logits, RuntimeException[] faults) {
        public boolean failed(int chunk) {
            return faults[chunk] != null;
        }
    }

    private StepResult run(List<SequenceChunk> chunks, boolean isolate) {
        int rows = 0, logitRows = 0;
        List<StepBatch.Entry> entries = new ArrayList<>(chunks.size());
        for (SequenceChunk c : chunks) {
            int start = c.cache().length();
            if (start + c.tokens().length > config.contextLength()) {
                throw new IllegalArgumentException("sequence would reach " + (start + c.tokens().length)
                        + " tokens; the model's context is " + config.contextLength());
            }
            entries.add(new StepBatch.Entry(c.cache(), rows, c.tokens().length, start, c.endsPrompt()));
            rows += c.tokens().length;
            logitRows += c.allLogits() ? c.tokens().length : 1;
        }
        Workspace w = workspace(rows);
        int[] tokens = new int[rows];
        int[] positions = new int[rows];
        for (int s = 0; s < entries.size(); s++) {
            StepBatch.Entry e = entries.get(s);
            int[] chunkTokens = chunks.get(s).tokens();
            for (int i = 0; i < e.tokens(); i++) {
                tokens[e.firstRow() + i] = checkToken(chunkTokens[i]);
                positions[e.firstRow() + i] = e.startPos() + i;
            }
        }
        StepBatch batch = isolate ? StepBatch.isolating(entries) : new StepBatch(entries);
        ModelConfig c = config;
        int qDim = c.heads() * c.headDim(), kvDim = c.kvHeads() * c.headDim();

        backend.embed(tokenEmbedding, tokens, w.x);
        for (int l = 0; l < c.layers(); l++) {
            Layer L = layers[l];
            backend.rmsnorm(w.xb, w.x, L.attnNorm, c.dim(), rows, c.rmsEps());
            backend.matmul(L.wq, w.xb, w.q, rows);
            backend.matmul(L.wk, w.xb, w.k, rows);
            backend.matmul(L.wv, w.xb, w.v, rows);
            if (L.bq != null) {
                backend.addBias(w.q, L.bq, qDim, rows);
                backend.addBias(w.k, L.bk, kvDim, rows);
                backend.addBias(w.v, L.bv, kvDim, rows);
            }
            // Keys go to the cache before RoPE: the cache rotates them itself, so that a format may
            // quantize pre-RoPE keys (KVQuant).
            backend.rope(w.q, positions, c.heads(), c.headDim(), c.rope(), rows);
            attention.attend(l, batch, w.q, w.k, w.v, w.att);
            backend.matmul(L.wo, w.att, w.xb, rows);
            backend.add(w.x, w.xb, (long) rows * c.dim());

            backend.rmsnorm(w.xb, w.x, L.ffnNorm, c.dim(), rows, c.rmsEps());
            backend.matmul(L.wGate, w.xb, w.hb, rows);
            backend.matmul(L.wUp, w.xb, w.hb2, rows);
            backend.siluMul(w.hb, w.hb2, c.ffnDim(), rows);
            backend.matmul(L.wDown, w.hb, w.xb, rows);
            backend.add(w.x, w.xb, (long) rows * c.dim());
        }
        RuntimeException[] faults = new RuntimeException[chunks.size()];
        for (int i = 0; i < chunks.size(); i++) {
            faults[i] = batch.fault(i);
            if (faults[i] != null) continue;
            try {
                chunks.get(i).cache().advance(chunks.get(i).tokens().length);
            } catch (RuntimeException e) {
                // the cache's own step-end work (its tier's bookkeeping) is still that sequence's
                if (!isolate) throw e;
                faults[i] = e;
            }
        }

        // Only the rows whose logits are wanted go through the output head (the largest matrix).
        MemorySegment head = w.x;
        if (logitRows != rows) {
            long rowBytes = (long) c.dim() * Float.BYTES;
            int dst = 0;
            for (int i = 0; i < chunks.size(); i++) {
                StepBatch.Entry e = entries.get(i);
                int n = chunks.get(i).allLogits() ? e.tokens() : 1;
                int first = e.firstRow() + e.tokens() - n;
                backend.copy(w.x, first * rowBytes, w.xb, dst * rowBytes, n * rowBytes);
                dst += n;
            }
            head = w.xb;
        }
        backend.rmsnorm(head, head, outputNorm, c.dim(), logitRows, c.rmsEps());
        backend.matmul(output, head, w.logits, logitRows);
        MemorySegment host = w.hostLogits.asSlice(0, (long) logitRows * c.vocabSize() * Float.BYTES);
        backend.copyToHost(w.logits.asSlice(0, host.byteSize()), host);

        float[][] result = new float[chunks.size()][];
        long offset = 0;
        for (int i = 0; i < chunks.size(); i++) {
            int n = chunks.get(i).allLogits() ? chunks.get(i).tokens().length : 1;
            float[] out = new float[n * c.vocabSize()];
            MemorySegment.copy(host, ValueLayout.JAVA_FLOAT, offset, out, 0, out.length);
            offset += (long) out.length * Float.BYTES;
            result[i] = faults[i] == null ? out : null;
        }
        return new StepResult(result, faults);
    }

    private int checkToken(int token) {
        if (token < 0 || token >= config.vocabSize()) {
            throw new IllegalArgumentException("token id " + token + " outside the vocabulary [0, " + config.vocabSize() + ")");
        }
        return token;
    }

    /** Activation buffers for up to {@code rows} rows, grown geometrically and reused across steps. */
    private Workspace workspace(int rows) {
        if (ws == null || ws.rows < rows) {
            int cap = Math.max(rows, ws == null ? 1 : Math.min(ws.rows * 2, Math.max(rows, 4096)));
            if (ws != null) ws.arena.close();
            ws = new Workspace(cap);
        }
        return ws;
    }

    private final class Workspace {
        final int rows;
        final Arena arena = Arena.ofShared();
        final MemorySegment x, xb, q, k, v, att, hb, hb2, logits, hostLogits;

        Workspace(int rows) {
            this.rows = rows;
            ModelConfig c = config;
            long f = Float.BYTES;
            x = backend.allocate(rows * (long) c.dim() * f);
            xb = backend.allocate(rows * (long) Math.max(c.dim(), c.heads() * c.headDim()) * f);
            q = backend.allocate(rows * (long) c.heads() * c.headDim() * f);
            k = backend.allocate(rows * (long) c.kvHeads() * c.headDim() * f);
            v = backend.allocate(rows * (long) c.kvHeads() * c.headDim() * f);
            att = backend.allocate(rows * (long) c.heads() * c.headDim() * f);
            hb = backend.allocate(rows * (long) c.ffnDim() * f);
            hb2 = backend.allocate(rows * (long) c.ffnDim() * f);
            logits = backend.allocate(rows * (long) c.vocabSize() * f);
            hostLogits = arena.allocate(rows * (long) c.vocabSize() * f, 64);
        }
    }

    private void checkShapes() {
        ModelConfig c = config;
        int qDim = c.heads() * c.headDim(), kvDim = c.kvHeads() * c.headDim();
        expect(tokenEmbedding, c.dim(), c.vocabSize());
        expect(output, c.dim(), c.vocabSize());
        for (Layer L : layers) {
            expect(L.wq, c.dim(), qDim);
            expect(L.wk, c.dim(), kvDim);
            expect(L.wv, c.dim(), kvDim);
            expect(L.wo, qDim, c.dim());
            expect(L.wGate, c.dim(), c.ffnDim());
            expect(L.wUp, c.dim(), c.ffnDim());
            expect(L.wDown, c.ffnDim(), c.dim());
        }
    }

    private void expect(WeightTensor t, int cols, int rows) {
        if (t.cols() != cols || t.rows() != rows) {
            throw new IllegalArgumentException(file.path() + ": tensor " + t.name() + " has shape [" + t.cols() + ", "
                    + t.rows() + "], the model's hyper-parameters need [" + cols + ", " + rows + "]");
        }
    }

    private static WeightTensor require(Map<String, WeightTensor> t, String name) {
        WeightTensor w = t.get(name);
        if (w == null) throw new IllegalArgumentException("model file has no tensor '" + name + "'");
        if (!w.type().supported) {
            throw new IllegalArgumentException("tensor " + name + " has type " + w.type() + ", which this runtime does not support");
        }
        return w;
    }

    private WeightTensor optional(Map<String, WeightTensor> t, String name) {
        WeightTensor w = t.get(name);
        return w == null ? null : backend.upload(w);
    }

    @Override
    public void close() {
        if (ws != null) ws.arena.close();
        if (attention instanceof AutoCloseable c) {
            try {
                c.close();
            } catch (Exception e) {
                throw new IllegalStateException("closing attention failed", e);
            }
        }
        file.close();
    }
}
