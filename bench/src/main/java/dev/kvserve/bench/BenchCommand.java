package dev.kvserve.bench;

import dev.kvserve.http.ServeBenchCommand;
import dev.kvserve.http.cli.ProgressBar;
import dev.kvserve.http.ByteSize;
import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.Backends;
import dev.kvserve.kvcache.KvBudgetExceededException;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.runtime.model.DefaultModel;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.model.SequenceChunk;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code kvserve bench}: llama-bench for this runtime. For every model × threads × KV policy ×
 * depth × batch it times pp (one batched prefill of {@code p} tokens) and tg ({@code n}
 * single-token decode steps), each over {@code -r} repetitions after warm-up ones, and prints
 * mean ± standard deviation of tokens/s. Tokens are seeded random ids, as llama-bench's are. At
 * depth D ({@code -d}, llama-bench's) each sequence's cache first holds D tokens (filled once, untimed;
 * every repetition runs on forks); {@code --batch B} runs B sequences in each step
 * (llama-batched-bench's S_TG / S_PP). Its subcommand {@code bench serve} ({@link ServeBenchCommand}) load-tests a running server.
 */
@Command(name = "bench", mixinStandardHelpOptions = true, subcommands = {ServeBenchCommand.class, OffloadBenchCommand.class},
        description = {"Prompt processing (pp) and generation (tg) speed, like llama-bench.",
                "",
                "pp: one batched prefill of -p random tokens; tg: -n single-token decode steps; both from a cache already",
                "holding -d tokens (default: empty), for --batch sequences at once (aggregate t/s). Mean ± stddev of",
                "tokens/s over -r repetitions after --warmup untimed ones. tg rows also show the weight and KV bytes one",
                "decode step reads and the bandwidth that implies, to hold against the machine's memory bandwidth.",
                "Progress goes to stderr.",
                "",
                "kvserve bench serve --help: load-test a running server instead (throughput, TTFT, TPOT).",
                "kvserve bench offload --help: long contexts over the offload tiers (host RAM, SSD, prefetch, CSD)."})
public final class BenchCommand implements Callable<Integer> {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    /** Tables go to the command line's writer (stdout, or what a test installs); progress to stderr. */
    private java.io.PrintWriter out() {
        return spec.commandLine().getOut();
    }

    @Option(names = {"-m", "--model"}, paramLabel = "PATH", split = ",",
            description = "GGUF file(s) or Hugging Face checkpoint directories, comma-separated or repeated (default: the embedded stories260K).")
    List<Path> models = new ArrayList<>();

    @Option(names = {"-p", "--n-prompt"}, paramLabel = "N", split = ",", defaultValue = "512",
            description = "Prompt lengths for pp tests, comma-separated; 0 skips pp (default: ${DEFAULT-VALUE}).")
    List<Integer> prompts;

    @Option(names = {"-n", "--n-gen"}, paramLabel = "N", split = ",", defaultValue = "128",
            description = "Generated tokens for tg tests, comma-separated; 0 skips tg (default: ${DEFAULT-VALUE}).")
    List<Integer> gens;

    @Option(names = {"-d", "--n-depth", "--depth"}, paramLabel = "D", split = ",", defaultValue = "0",
            description = {"Tokens already in each sequence's cache before a test is timed, comma-separated, like",
                    "llama-bench -d: the cache is filled once per policy and depth by an untimed prefill of D seeded-random",
                    "tokens (chunks of --fill-chunk), and every repetition runs on a copy-on-write fork of it (default: ${DEFAULT-VALUE})."})
    List<Integer> depths;

    @Option(names = {"-b", "--batch"}, paramLabel = "B", split = ",", defaultValue = "1",
            description = {"Sequences run together, comma-separated: tg decodes B sequences at once (one batched step of",
                    "B one-token chunks), pp prefills B prompts of -p tokens in one step; t/s is the aggregate, B x tokens",
                    "/ time, like llama-batched-bench's S_TG / S_PP (default: ${DEFAULT-VALUE})."})
    List<Integer> batches;

    @Option(names = "--kv-budget", paramLabel = "BYTES",
            description = {"KV pool budget, e.g. 2GiB (default: sized for the largest test, from the policy's own",
                    "accounting: B x (bytes of D tokens + bytes of D + max(P, N) tokens), the filled sequences and their forks)."})
    String kvBudget;

    @Option(names = "--fill-chunk", paramLabel = "N", defaultValue = "512",
            description = "Tokens per prefill step while filling the cache to the depth (default: ${DEFAULT-VALUE}).")
    int fillChunk;

    @Option(names = {"-t", "--threads"}, paramLabel = "N", split = ",",
            description = "CPU thread counts, comma-separated (default: all cores).")
    List<Integer> threads = new ArrayList<>();

    @Option(names = "--kv", paramLabel = "SPEC", defaultValue = "fp16",
            description = "KV-cache policies, comma-separated or repeated (see kv-eval --help; default: ${DEFAULT-VALUE}).")
    List<String> kv;

    @Option(names = {"-r", "--repetitions"}, paramLabel = "N", defaultValue = "5",
            description = "Timed repetitions of each test (default: ${DEFAULT-VALUE}).")
    int repetitions;

    @Option(names = "--warmup", paramLabel = "N", defaultValue = "1",
            description = "Untimed repetitions before the timed ones, for the JIT (default: ${DEFAULT-VALUE}).")
    int warmup;

    @Option(names = "--backend", paramLabel = "auto|cpu|cuda", defaultValue = "auto",
            description = "Compute backend (default: ${DEFAULT-VALUE}).")
    String backend;

    @Option(names = "--seed", defaultValue = "1234", description = "Seed of the random token ids (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = {"-o", "--out"}, paramLabel = "FILE", description = "Also write every result to FILE (.json or .csv).")
    Path outFile;

    /**
     * One timed test. {@code kvBytesHeld}: bytes one sequence's cache held at the depth, before the
     * test; {@code kvBytesPerToken}: for tg, the KV bytes one sequence's decode step reads, the mean of
     * its cache's bytes before the first and after the last step (NaN for pp).
     */
    public record Measurement(String test, int prompt, int gen, int depth, int batch, long kvBytesHeld,
                              double kvBytesPerToken, double[] tokensPerSecond) {
        public double mean() {
            double s = 0;
            for (double v : tokensPerSecond) s += v;
            return s / tokensPerSecond.length;
        }

        /** Sample standard deviation, as llama-bench reports. */
        public double stddev() {
            if (tokensPerSecond.length < 2) return 0;
            double m = mean(), s = 0;
            for (double v : tokensPerSecond) s += (v - m) * (v - m);
            return Math.sqrt(s / (tokensPerSecond.length - 1));
        }
    }

    @Override
    public Integer call() {
        if (repetitions < 1) throw new IllegalArgumentException("-r must be >= 1, got " + repetitions);
        if (warmup < 0) throw new IllegalArgumentException("--warmup must be >= 0, got " + warmup);
        for (int p : prompts) if (p < 0) throw new IllegalArgumentException("-p must be >= 0, got " + p);
        for (int g : gens) if (g < 0) throw new IllegalArgumentException("-n must be >= 0, got " + g);
        for (int d : depths) if (d < 0) throw new IllegalArgumentException("-d must be >= 0, got " + d);
        for (int b : batches) if (b < 1) throw new IllegalArgumentException("--batch must be >= 1, got " + b);
        if (fillChunk < 1) throw new IllegalArgumentException("--fill-chunk must be >= 1, got " + fillChunk);
        long fixedBudget = kvBudget == null ? 0 : ByteSize.parse(kvBudget);
        if (kvBudget != null && fixedBudget <= 0) throw new IllegalArgumentException("--kv-budget must be positive, got " + kvBudget);
        if (outFile != null) Report.checkName(outFile);
        List<Integer> threadCounts = threads.isEmpty() ? List.of(Runtime.getRuntime().availableProcessors()) : threads;
        for (int t : threadCounts) if (t < 1) throw new IllegalArgumentException("-t must be >= 1, got " + t);
        List<Path> modelPaths = models.isEmpty() ? List.of(DefaultModel.path()) : models;
        for (Path m : modelPaths) if (!Files.exists(m)) throw new IllegalArgumentException("model " + m + " does not exist");
        List<KvCachePolicy> policies = PolicySpecs.parse(kv);

        List<Test> tests = tests(prompts, gens, depths, batches);
        if (tests.isEmpty()) throw new IllegalArgumentException("nothing to measure: every -p and -n is 0");

        Report report = new Report();
        long runs = (long) modelPaths.size() * threadCounts.size() * policies.size() * tests.size();
        try (ProgressBar bar = new ProgressBar("bench", runs)) {
            long done = 0;
            for (Path modelPath : modelPaths) {
                ModelWeights weights = ModelWeights.of(modelPath);
                for (int t : threadCounts) {
                    try (Backend be = Backends.select(backend, t);
                         LlamaModel model = LlamaModel.load(modelPath, be, t)) {
                        for (Test test : tests) checkContext(model, test);
                        long budget = kvBudget != null ? fixedBudget : budgetFor(model, policies, tests, fillChunk);
                        try (KvCacheManager kvm = new KvCacheManager(model.identity(), model.kvGeometry(), budget)) {
                            for (KvCachePolicy policy : policies) {
                                for (int depth : depths) {
                                    List<Test> atDepth = tests.stream().filter(x -> x.depth() == depth).toList();
                                    int maxBatch = atDepth.stream().mapToInt(Test::batch).max().orElse(0);
                                    if (maxBatch == 0) continue;
                                    String where = model.name() + " t=" + t + " " + policy;
                                    bar.suffix(where + " fill d" + depth);
                                    bar.update(done);
                                    List<PagedSequence> bases = new ArrayList<>();
                                    try {
                                        fill(model, kvm, policy, depth, maxBatch, fillChunk, seed, bases);
                                        for (Test test : atDepth) {
                                            bar.suffix(where + " " + test.name());
                                            bar.update(done);
                                            Measurement m = measure(model, kvm, policy, test, bases, repetitions, warmup, seed);
                                            addRow(report, modelPath, model, weights, be, t, policy, m);
                                            bar.update(++done);
                                        }
                                    } catch (KvBudgetExceededException e) {
                                        throw new IllegalArgumentException("the KV budget of " + ModelWeights.size(budget) + " is too small for "
                                                + policy + " at depth " + depth + (kvBudget != null ? " (raise --kv-budget)" : "")
                                                + ": " + e.getMessage(), e);
                                    } finally {
                                        for (PagedSequence b : bases) b.close();
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        out().print(Report.markdown(columns(), report.rows()));
        out().flush();
        if (outFile != null) report.write(outFile);
        return 0;
    }

    /** pp (prompt > 0) or tg (gen > 0) of {@code batch} sequences, each holding {@code depth} tokens first. */
    record Test(String name, int prompt, int gen, int depth, int batch) {
        /** Positions one sequence reaches. */
        int positions() {
            return depth + prompt + gen;
        }
    }

    /** The grid, in llama-bench's order: per depth, pp tests then tg tests, each for every batch size. */
    static List<Test> tests(List<Integer> prompts, List<Integer> gens, List<Integer> depths, List<Integer> batches) {
        List<Test> tests = new ArrayList<>();
        for (int d : depths) {
            for (int b : batches) for (int p : prompts) if (p > 0) tests.add(new Test(name("pp", p, d, b), p, 0, d, b));
            for (int b : batches) for (int g : gens) if (g > 0) tests.add(new Test(name("tg", g, d, b), 0, g, d, b));
        }
        return tests;
    }

    /** {@code tg64}, {@code tg64@d4096}, {@code tg64@d2048x16}, {@code pp512x4}. */
    static String name(String kind, int tokens, int depth, int batch) {
        return kind + tokens + (depth > 0 ? "@d" + depth : "") + (batch > 1 ? "x" + batch : "");
    }

    static void checkContext(LlamaModel model, Test test) {
        int ctx = model.config().contextLength();
        if (test.positions() > ctx) {
            throw new IllegalArgumentException(test.name() + " needs " + test.positions() + " positions per sequence (depth "
                    + test.depth() + " + " + (test.prompt() + test.gen()) + "); the model's context is " + ctx);
        }
    }

    /**
     * The KV pool budget the tests need under every policy, from the pool's own accounting
     * ({@link KvCacheManager#bytesFor}): at each depth, {@code B} filled sequences of {@code D} tokens
     * plus {@code B} forks that may each come to hold a whole sequence of {@code D + P} or
     * {@code D + N} tokens of their own (a fork shares its base's blocks until it writes, so this
     * is an upper bound). The pool reserves nothing up front, so a generous bound costs no memory.
     */
    static long budgetFor(LlamaModel model, List<KvCachePolicy> policies, List<Test> tests, int fillChunk) {
        long most = 0;
        try (KvCacheManager sizer = new KvCacheManager(model.identity(), model.kvGeometry(), 1)) {
            for (KvCachePolicy policy : policies) {
                sizer.check(policy);
                for (int depth : tests.stream().map(Test::depth).distinct().toList()) {
                    long total = 0;
                    int maxBatch = 0;
                    long perFork = 0;
                    for (Test t : tests) {
                        if (t.depth() != depth) continue;
                        maxBatch = Math.max(maxBatch, t.batch());
                        int step = t.prompt() > 0 ? t.prompt() : 1;
                        perFork = Math.max(perFork, (long) t.batch() * sizer.bytesFor(policy, t.positions(), step));
                    }
                    if (depth > 0) total += maxBatch * sizer.bytesFor(policy, depth, Math.min(depth, fillChunk));
                    total += perFork;
                    most = Math.max(most, total);
                }
            }
        }
        // a block or so of slack per sequence for a fork's copy-on-write partial block
        return Math.max(1, most + most / 16 + (1 << 20));
    }

    /**
     * Fills {@code batch} new sequences (added to {@code into}, which the caller closes) to {@code depth}
     * seeded-random tokens, {@code chunk} tokens per step; the last chunk ends the prompt. Nothing when
     * {@code depth} is 0: the tests then open empty sequences.
     */
    static void fill(LlamaModel model, KvCacheManager kvm, KvCachePolicy policy, int depth, int batch, int chunk, long seed,
                     List<PagedSequence> into) {
        if (depth == 0) return;
        SplittableRandom rnd = new SplittableRandom(seed ^ 0x5DEECE66DL);
        int vocab = model.config().vocabSize();
        for (int b = 0; b < batch; b++) {
            PagedSequence seq = kvm.open(policy);
            into.add(seq);
            for (int at = 0; at < depth; at += chunk) {
                int n = Math.min(chunk, depth - at);
                model.forward(List.of(new SequenceChunk(seq, rnd.ints(n, 0, vocab).toArray(), false, at + n == depth)));
            }
        }
    }

    /**
     * Times {@code test} {@code reps} times after {@code warmup} untimed runs. Each run starts from
     * forks of the first {@code test.batch()} of {@code bases} (filled to the depth), or from empty
     * sequences when the depth is 0, and closes them after.
     */
    static Measurement measure(LlamaModel model, KvCacheManager kvm, KvCachePolicy policy, Test test, List<PagedSequence> bases,
                               int reps, int warmup, long seed) {
        checkContext(model, test);
        int batch = test.batch();
        if (test.depth() > 0 && bases.size() < batch) {
            throw new IllegalArgumentException(test.name() + " needs " + batch + " filled sequences, got " + bases.size());
        }
        SplittableRandom rnd = new SplittableRandom(seed);
        int vocab = model.config().vocabSize();
        double[] tps = new double[reps];
        long held = 0;
        double kvPerToken = Double.NaN;
        for (int r = -warmup; r < reps; r++) {
            List<PagedSequence> seqs = new ArrayList<>(batch);
            try {
                for (int b = 0; b < batch; b++) seqs.add(test.depth() > 0 ? kvm.fork(bases.get(b)) : kvm.open(policy));
                long heldBefore = 0;
                for (PagedSequence s : seqs) heldBefore += s.bytesHeld();
                long t0, t1;
                if (test.prompt() > 0) {
                    List<SequenceChunk> step = new ArrayList<>(batch);
                    for (PagedSequence s : seqs) step.add(new SequenceChunk(s, rnd.ints(test.prompt(), 0, vocab).toArray(), false));
                    t0 = System.nanoTime();
                    model.forward(step);
                    t1 = System.nanoTime();
                    if (r >= 0) tps[r] = (double) batch * test.prompt() / ((t1 - t0) / 1e9);
                } else {
                    int[][] tokens = new int[test.gen()][];
                    for (int i = 0; i < test.gen(); i++) tokens[i] = rnd.ints(batch, 0, vocab).toArray();
                    List<List<SequenceChunk>> steps = new ArrayList<>(test.gen());
                    for (int[] row : tokens) {
                        List<SequenceChunk> step = new ArrayList<>(batch);
                        for (int b = 0; b < batch; b++) step.add(new SequenceChunk(seqs.get(b), new int[] {row[b]}, false));
                        steps.add(step);
                    }
                    t0 = System.nanoTime();
                    for (List<SequenceChunk> step : steps) model.forward(step);
                    t1 = System.nanoTime();
                    if (r >= 0) tps[r] = (double) batch * test.gen() / ((t1 - t0) / 1e9);
                    long heldAfter = 0;
                    for (PagedSequence s : seqs) heldAfter += s.bytesHeld();
                    kvPerToken = (heldBefore + heldAfter) / 2.0 / batch;
                }
                held = heldBefore / batch;
            } finally {
                for (PagedSequence s : seqs) s.close();
            }
        }
        return new Measurement(test.name(), test.prompt(), test.gen(), test.depth(), batch, held, kvPerToken, tps);
    }

    private static void addRow(Report report, Path path, LlamaModel model, ModelWeights w, Backend be, int threads,
                               KvCachePolicy policy, Measurement m) {
        Map<String, Object> row = report.addRow();
        row.put("model", model.name() + " " + w.mainType());
        row.put("model_path", path.toString());
        row.put("size_bytes", w.bytes());
        row.put("params", w.params());
        row.put("backend", backendLabel(be));
        row.put("threads", threads);
        row.put("kv", policy.toString());
        row.put("test", m.test());
        row.put("n_prompt", m.prompt());
        row.put("n_gen", m.gen());
        row.put("n_depth", m.depth());
        row.put("n_batch", m.batch());
        row.put("repetitions", m.tokensPerSecond().length);
        row.put("tps_mean", m.mean());
        row.put("tps_stddev", m.stddev());
        row.put("tps_samples", m.tokensPerSecond());
        boolean tg = m.gen() > 0;
        row.put("weight_bytes_per_token", tg ? (double) w.bytesPerDecodedToken() : Double.NaN);
        row.put("weight_gb_per_s", tg ? w.bytesPerDecodedToken() * m.mean() / m.batch() / 1e9 : Double.NaN);
        row.put("kv_bytes_held", m.kvBytesHeld());
        row.put("kv_bytes_per_token", tg ? m.kvBytesPerToken() : Double.NaN);
        // one decode step reads the weights once and every sequence's cache
        double perStep = tg ? w.bytesPerDecodedToken() + m.batch() * m.kvBytesPerToken() : Double.NaN;
        row.put("bytes_per_step", perStep);
        row.put("gb_per_s", tg ? perStep * m.mean() / m.batch() / 1e9 : Double.NaN);
    }

    private static String backendLabel(Backend be) {
        String name = be.name();
        int paren = name.indexOf(' ');
        return (paren > 0 ? name.substring(0, paren) : name).toUpperCase(java.util.Locale.ROOT);
    }

    static List<Report.Column> columns() {
        return List.of(
                new Report.Column("model", false, r -> (String) r.get("model")),
                new Report.Column("size", true, r -> ModelWeights.size((Long) r.get("size_bytes"))),
                new Report.Column("params", true, r -> ModelWeights.count((Long) r.get("params"))),
                new Report.Column("backend", false, r -> (String) r.get("backend")),
                new Report.Column("threads", true, r -> r.get("threads").toString()),
                new Report.Column("kv", false, r -> (String) r.get("kv")),
                new Report.Column("test", true, r -> (String) r.get("test")),
                new Report.Column("t/s", true, r -> String.format("%.2f ± %.2f", (Double) r.get("tps_mean"), (Double) r.get("tps_stddev"))),
                new Report.Column("weights/token", true, r -> Double.isNaN((Double) r.get("weight_bytes_per_token")) ? ""
                        : ModelWeights.size(((Double) r.get("weight_bytes_per_token")).longValue())),
                new Report.Column("weight GB/s", true, r -> gbs((Double) r.get("weight_gb_per_s"))),
                new Report.Column("kv/token", true, r -> bytes((Double) r.get("kv_bytes_per_token"))),
                new Report.Column("bytes/step", true, r -> bytes((Double) r.get("bytes_per_step"))),
                new Report.Column("GB/s", true, r -> gbs((Double) r.get("gb_per_s"))));
    }

    private static String bytes(double b) {
        return Double.isNaN(b) ? "" : ModelWeights.size(Math.round(b));
    }

    private static String gbs(double v) {
        return Double.isNaN(v) ? "" : String.format("%.2f", v);
    }
}
