package dev.kvserve.scheduler;

import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.Backends;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.runtime.model.DefaultModel;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.tokenizer.Tokenizer;
import java.nio.file.Path;
import java.util.Objects;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Flow;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * KVServe embedded: a model, a paged and compressed KV cache, and a continuous-batching engine
 * thread serving any number of callers at once.
 *
 * <pre>{@code
 * try (Engine engine = Engine.builder().defaultModel().kvPolicy("int4:group=8").build()) {
 *     GenerationResult r = engine.generate(GenerationRequest.builder("Once upon a time").greedy().maxTokens(32).build());
 *     System.out.println(r.text());
 * }
 * }</pre>
 *
 * <p>All methods are thread-safe. Requests are queued and scheduled first come, first served
 * (see {@link Scheduler}); each has its own sampler and seed, so its output does not depend on
 * what else runs. For {@code n > 1} completions of one prompt, submit n requests (with different
 * seeds): identical prompt prefixes share KV blocks copy-on-write, so the prompt is cached once
 * wherever the pool and policy allow it.
 *
 * <p>One request cannot break the others: when its KV policy throws (opening its cache, or in a
 * step) it alone fails, with an IllegalStateException saying so, and its blocks are freed; if the
 * engine thread itself dies, it fails what it was running and is restarted ({@link #health()}).
 */
public final class Engine implements AutoCloseable {

    /** KV policy for requests that name none and builders that set none: uncompressed fp16. */
    public static final String DEFAULT_KV_POLICY = "fp16";

    private final StepModel model;
    private final KvSpace pool;
    private final Tokenizer tokenizer;
    private final TokenPicker.Factory pickers;
    private final String modelName;
    private final String chatTemplate;
    private final String defaultPolicy;
    private final int maxWaiting;
    private final long fp16BytesPerToken;
    private final EngineCounters counters = new EngineCounters();
    private final AtomicInteger unadmitted = new AtomicInteger();
    private final AtomicLong ids = new AtomicLong();
    private final AtomicBoolean closed = new AtomicBoolean();
    private final EngineLoop loop;
    /** The engine thread now: a fresh one replaces a thread that died (see {@link #health()}). */
    private volatile Thread thread;
    private final ExecutorService streamDelivery = Executors.newVirtualThreadPerTaskExecutor();
    private final Runnable onClose;

    /** Everything an engine runs on; the builder makes them from a model file. */
    record Parts(StepModel model, KvSpace pool, Tokenizer tokenizer, TokenPicker.Factory pickers,
                 String modelName, String chatTemplate, Runnable onClose) {}

    Engine(Parts parts, String defaultPolicy, int maxBatch, int maxTokensPerStep, int maxWaiting) {
        this(parts, defaultPolicy, Preemption.SWAP, maxBatch, maxTokensPerStep, maxWaiting);
    }

    Engine(Parts parts, String defaultPolicy, Preemption preemption, int maxBatch, int maxTokensPerStep, int maxWaiting) {
        this(parts, defaultPolicy, preemption, maxBatch, maxTokensPerStep, Scheduler.defaultPrefillChunk(maxTokensPerStep), maxWaiting);
    }

    Engine(Parts parts, String defaultPolicy, Preemption preemption, int maxBatch, int maxTokensPerStep, int prefillChunk,
           int maxWaiting) {
        this.model = parts.model();
        this.pool = parts.pool();
        this.tokenizer = parts.tokenizer();
        this.pickers = parts.pickers();
        this.modelName = parts.modelName();
        this.chatTemplate = parts.chatTemplate();
        this.onClose = parts.onClose();
        if (maxWaiting < 0) throw new IllegalArgumentException("maxWaiting must be >= 0, got " + maxWaiting);
        this.maxWaiting = maxWaiting;
        this.defaultPolicy = pool.canonical(defaultPolicy);
        KvGeometry geometry = model.kvGeometry();
        this.fp16BytesPerToken = 2L * geometry.layers() * geometry.kvDim() * Short.BYTES;
        Scheduler scheduler = new Scheduler(pool, Objects.requireNonNull(preemption, "preemption"), maxBatch, maxTokensPerStep,
                Math.min(prefillChunk, maxTokensPerStep));
        this.loop = new EngineLoop(model, pool, scheduler, counters, unadmitted);
        startThread();
    }

    private void startThread() {
        Thread t = Thread.ofPlatform().name("kvserve-engine").daemon(true).unstarted(this::runLoop);
        // set before the thread that died ends, so close() joins the fresh one next
        thread = t;
        t.start();
    }

    private void runLoop() {
        boolean handedOver = false;
        try {
            // The loop died and failed what it held: a fresh thread serves what comes next (the dead
            // one's interrupt status and thread-locals are not to be trusted); without one, this one.
            while (!handedOver && loop.run()) handedOver = startFresh();
        } finally {
            if (!handedOver) shutDown();
        }
    }

    private boolean startFresh() {
        try {
            startThread();
            return true;
        } catch (Throwable noThread) {
            thread = Thread.currentThread();
            return false;
        }
    }

    private void shutDown() {
        // Failures of unfinished streams are queued by now: let them reach their subscribers.
        streamDelivery.shutdown();
        // The loop thread owns the model and the pool: nothing else touches them, even now.
        try {
            pool.close();
        } finally {
            try {
                model.close();
            } finally {
                if (onClose != null) onClose.run();
            }
        }
    }

    public static Builder builder() {
        return new Builder();
    }

    /**
     * Queues a request and returns at once. Checks it here, on the caller's thread: an empty or
     * over-long prompt, an unknown token id, a bad KV policy or sampling parameter, or a prompt
     * whose KV cache could never fit the budget throw IllegalArgumentException saying so; a full
     * waiting queue throws {@link QueueFullException}; a closed engine IllegalStateException.
     */
    public GenerationHandle submit(GenerationRequest request, GenerationListener listener) {
        Objects.requireNonNull(request, "request");
        Objects.requireNonNull(listener, "listener");
        ensureOpen();
        int[] prompt = request.promptTokens() != null ? request.promptTokens() : tokenizer.encode(request.prompt());
        checkPrompt(prompt);
        String policy = pool.canonical(request.kvPolicy() != null ? request.kvPolicy() : defaultPolicy);
        long need = pool.bytesFor(policy, prompt.length + 1);
        if (need > pool.capacityBytes()) {
            throw new IllegalArgumentException("the prompt's " + prompt.length + " tokens need " + need
                    + " bytes of KV cache under policy '" + policy + "' but the engine's KV budget is "
                    + pool.capacityBytes() + " bytes");
        }
        if (request.logprobs() < -1 || request.logprobs() > tokenizer.vocabSize()) {
            throw new IllegalArgumentException("logprobs must be -1 (chosen token only), 0 (none) or up to the vocabulary size "
                    + tokenizer.vocabSize() + ", got " + request.logprobs());
        }
        long seed = request.seed() != null ? request.seed() : ThreadLocalRandom.current().nextLong();
        TokenPicker picker = pickers.create(request, seed, prompt);

        if (unadmitted.incrementAndGet() > maxWaiting) {
            unadmitted.decrementAndGet();
            throw new QueueFullException(maxWaiting);
        }
        var generation = new Generation(ids.getAndIncrement(), request, prompt, policy, picker, tokenizer,
                model.contextLength(), listener, new CompletableFuture<>(), loop, System.nanoTime());
        if (!loop.submit(generation)) {
            unadmitted.decrementAndGet();
            ensureOpen();
            throw new IllegalStateException("the engine is closed");
        }
        counters.promptTokens.add(prompt.length);
        return generation.handle;
    }

    /** Submits and waits. An interrupt cancels the request and throws CancellationException. */
    public GenerationResult generate(GenerationRequest request) {
        GenerationHandle handle = submit(request, new GenerationListener() {});
        try {
            return handle.result().get();
        } catch (InterruptedException e) {
            handle.cancel();
            Thread.currentThread().interrupt();
            throw new CancellationException("interrupted while waiting for generation " + handle.id());
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RuntimeException r) throw r;
            if (e.getCause() instanceof Error err) throw err;
            throw new IllegalStateException(e.getCause());
        }
    }

    /**
     * Submits now (throwing as {@link #submit} does) and returns the events as a publisher for one
     * subscriber, with backpressure: events wait in a buffer until requested and are delivered on
     * a separate thread, so a slow subscriber never slows the engine. Cancelling the subscription
     * cancels the request. The last event carries the {@link GenerationResult}; a failed request
     * ends with onError.
     */
    public Flow.Publisher<TokenEvent> stream(GenerationRequest request) {
        var stream = new TokenStream(streamDelivery);
        stream.attach(submit(request, stream));
        return stream;
    }

    /**
     * Whether the engine serves requests now, for health checks: {@code SERVING}; {@code RESTARTING}
     * for a moment after the engine thread died (its requests failed, new ones are queued for the
     * fresh thread); {@code FAILED} when it could not be restarted (submit throws); {@code CLOSED}
     * after {@link #close()}. Also how many times the thread was restarted and the last failure
     * that was not a single request's own. Thread-safe and cheap.
     */
    public EngineHealth health() {
        EngineHealth h = loop.health();
        return closed.get() ? new EngineHealth(EngineHealth.Status.CLOSED, h.restarts(), h.lastFailure()) : h;
    }

    public EngineStats stats() {
        EngineLoop.Snapshot s = loop.snapshot();
        return new EngineStats(s.running(), s.waiting(), s.usage().blocksUsed(), s.usage().blocksFree(),
                s.usage().bytesUsed(), pool.capacityBytes(), s.usage().bytesByTier(), s.cachedTokens(),
                s.cachedTokens() * fp16BytesPerToken, counters.promptTokens.sum(), counters.generationTokens.sum(),
                counters.requests.sum(), counters.preemptions.sum(),
                counters.timeToFirstToken.snapshot(), counters.interTokenLatency.snapshot());
    }

    /** The model's tokenizer (thread-safe): for chat templates, token counting, or tokenized prompts. */
    public Tokenizer tokenizer() {
        return tokenizer;
    }

    public String modelName() {
        return modelName;
    }

    /** Most tokens (prompt + generated) a sequence may reach. */
    public int contextLength() {
        return model.contextLength();
    }

    /** The model's Jinja chat template, or null when it has none. */
    public String chatTemplate() {
        return chatTemplate;
    }

    /**
     * The canonical form of a KV policy spec (equal policies, equal strings). Throws
     * IllegalArgumentException naming what is wrong, also when the policy does not fit this model
     * (a group size the head size does not divide, for instance). Thread-safe.
     */
    public String canonicalKvPolicy(String spec) {
        Objects.requireNonNull(spec, "spec");
        return pool.canonical(spec);
    }

    /** The canonical KV policy of requests that name none. */
    public String defaultKvPolicy() {
        return defaultPolicy;
    }

    /**
     * Stops the engine thread; requests not finished fail with IllegalStateException; every KV block,
     * the pool and the model are freed. Idempotent. Called from a listener (the engine thread), it
     * returns without waiting and the engine stops after the callback.
     */
    @Override
    public void close() {
        if (closed.compareAndSet(false, true)) loop.stop();
        if (Thread.currentThread() == thread) return;
        boolean interrupted = false;
        // a thread that dies hands over to a fresh one before it ends: join until none is left
        for (Thread t = thread; t.isAlive() || t != thread; t = thread) {
            try {
                t.join();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
    }

    private void ensureOpen() {
        EngineHealth health = loop.health();
        if (health.status() == EngineHealth.Status.FAILED) throw new IllegalStateException("the engine failed: " + health.lastFailure());
        if (closed.get()) throw new IllegalStateException("the engine is closed");
    }

    private void checkPrompt(int[] prompt) {
        if (prompt.length == 0) throw new IllegalArgumentException("the prompt is empty: give at least one token");
        int context = model.contextLength();
        if (prompt.length > context) {
            throw new IllegalArgumentException("the prompt has " + prompt.length + " tokens but the model's context is "
                    + context + " tokens (prompt and generated tokens together)");
        }
        int vocab = model.vocabSize();
        for (int i = 0; i < prompt.length; i++) {
            if (prompt[i] < 0 || prompt[i] >= vocab) {
                throw new IllegalArgumentException("prompt token " + i + " is " + prompt[i] + ", outside the vocabulary [0, " + vocab + ")");
            }
        }
    }

    /** Configures and starts an {@link Engine}. */
    public static final class Builder {
        private Path model;
        private boolean defaultModel;
        private String kvPolicy = DEFAULT_KV_POLICY;
        private long kvBudget = 256L << 20;
        private int maxBatch = 32;
        private Preemption preemption = Preemption.SWAP;
        private int maxTokensPerStep = 512;
        private int prefillChunk = -1;
        private int maxWaiting = 1024;
        private int threads = Runtime.getRuntime().availableProcessors();
        private String backend = "auto";

        private Builder() {}

        /** A GGUF model file. */
        public Builder model(Path file) {
            this.model = Objects.requireNonNull(file, "model");
            this.defaultModel = false;
            return this;
        }

        /** The embedded default model, {@link DefaultModel} (stories260K); also what a builder without a model uses. */
        public Builder defaultModel() {
            this.model = null;
            this.defaultModel = true;
            return this;
        }

        /** KV policy of requests that name none, e.g. {@code "int4:group=8+sink:sinks=4,window=128"}; default {@value #DEFAULT_KV_POLICY}. */
        public Builder kvPolicy(String spec) {
            this.kvPolicy = Objects.requireNonNull(spec, "kvPolicy");
            return this;
        }

        /** Bytes the KV pool may hold, counted as stored (compressed); default 256 MiB. */
        public Builder kvBudget(long bytes) {
            if (bytes <= 0) throw new IllegalArgumentException("kvBudget must be positive, got " + bytes);
            this.kvBudget = bytes;
            return this;
        }

        /**
         * What happens to a sequence preempted for KV space: {@link Preemption#SWAP} (default) moves its
         * blocks to the lower tiers of an {@code offload} policy and back, recomputing only sequences
         * whose policy has none; {@link Preemption#RECOMPUTE} always frees and recomputes.
         */
        public Builder preemption(Preemption mode) {
            this.preemption = Objects.requireNonNull(mode, "preemption");
            return this;
        }

        /** Most sequences holding a KV cache at once; default 32. */
        public Builder maxBatch(int sequences) {
            if (sequences < 1) throw new IllegalArgumentException("maxBatch must be >= 1, got " + sequences);
            this.maxBatch = sequences;
            return this;
        }

        /** Token budget of one step (decode tokens plus prefill chunks); default 512, at least maxBatch. */
        public Builder maxTokensPerStep(int tokens) {
            if (tokens < 1) throw new IllegalArgumentException("maxTokensPerStep must be >= 1, got " + tokens);
            this.maxTokensPerStep = tokens;
            return this;
        }

        /**
         * Most prompt tokens one sequence prefills in a step while other requests want budget (vLLM's
         * {@code long_prefill_token_threshold}), so that a long prompt never holds back a short request
         * for its whole prefill; alone, a prompt uses the whole step budget. Default a quarter of
         * {@link #maxTokensPerStep}; {@code maxTokensPerStep} or more turns the cap off.
         */
        public Builder prefillChunk(int tokens) {
            if (tokens < 1) throw new IllegalArgumentException("prefillChunk must be >= 1, got " + tokens);
            this.prefillChunk = tokens;
            return this;
        }

        /** Most requests waiting for admission before submit throws {@link QueueFullException}; default 1024. */
        public Builder maxWaiting(int requests) {
            if (requests < 0) throw new IllegalArgumentException("maxWaiting must be >= 0, got " + requests);
            this.maxWaiting = requests;
            return this;
        }

        /** CPU threads of the CPU backend; default all processors. */
        public Builder threads(int n) {
            if (n < 1) throw new IllegalArgumentException("threads must be >= 1, got " + n);
            this.threads = n;
            return this;
        }

        /** {@code "auto"} (the CPU while paged attention is host-only), {@code "cpu"} or {@code "cuda"}; default auto. */
        public Builder backend(String name) {
            this.backend = switch (Objects.requireNonNull(name, "backend")) {
                case "auto", "cpu", "cuda" -> name;
                default -> throw new IllegalArgumentException("backend must be auto, cpu or cuda, got '" + name + "'");
            };
            return this;
        }

        /**
         * Loads the model onto the backend, sizes the KV pool and starts the engine thread.
         *
         * @throws IllegalArgumentException for a bad setting (policy, budget below one block, ...)
         * @throws java.io.UncheckedIOException when the model cannot be read
         */
        public Engine build() {
            if (maxTokensPerStep < maxBatch) {
                throw new IllegalArgumentException("maxTokensPerStep (" + maxTokensPerStep + ") must be at least maxBatch ("
                        + maxBatch + ") so every running sequence can decode each step");
            }
            Path path = defaultModel || model == null ? DefaultModel.path() : model;
            Backend compute = Backends.select(backend, threads);
            LlamaModel llama = null;
            KvCacheManager kv = null;
            try {
                llama = LlamaModel.load(path, compute, threads);
                kv = new KvCacheManager(llama.identity(), llama.kvGeometry(), kvBudget);
                var parts = new Parts(new LlamaStepModel(llama, compute), new PagedKvSpace(kv), llama.tokenizer(),
                        SamplerPicker.factory(llama.tokenizer()), llama.name(), llama.chatTemplate(), null);
                return build(parts);
            } catch (RuntimeException | Error e) {
                if (kv != null) kv.close();
                if (llama != null) llama.close();
                compute.close();
                throw e;
            }
        }

        /** Engine over already-built parts (tests, and {@link #build()}). */
        Engine build(Parts parts) {
            int chunk = prefillChunk > 0 ? prefillChunk : Scheduler.defaultPrefillChunk(maxTokensPerStep);
            return new Engine(parts, kvPolicy, preemption, maxBatch, maxTokensPerStep, chunk, maxWaiting);
        }
    }
}
