package dev.kvserve.bench;

import dev.kvserve.http.ServeBenchCommand;
import dev.kvserve.http.cli.ProgressBar;
import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.Backends;
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
 * {@code kvserve bench}: llama-bench for this runtime. For every model × threads × KV policy it
 * times pp (one batched prefill of {@code p} tokens into an empty cache) and tg ({@code n}
 * single-token decode steps from an empty cache), each over {@code -r} repetitions after warm-up
 * ones, and prints mean ± standard deviation of tokens/s. Tokens are seeded random ids, as
 * llama-bench's are. Its subcommand {@code bench serve} ({@link ServeBenchCommand}) load-tests a running server.
 */
@Command(name = "bench", mixinStandardHelpOptions = true, subcommands = {ServeBenchCommand.class, OffloadBenchCommand.class},
        description = {"Prompt processing (pp) and generation (tg) speed, like llama-bench.",
                "",
                "pp: one batched prefill of -p random tokens into an empty cache; tg: -n single-token decode steps from",
                "an empty cache. Mean ± stddev of tokens/s over -r repetitions after --warmup untimed ones. tg rows also",
                "show the weight bytes one decode step reads and the bandwidth that implies, to hold against the",
                "machine's memory bandwidth. Progress goes to stderr.",
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

    private static final long UNBOUNDED_KV = 1L << 40;

    @Option(names = {"-m", "--model"}, paramLabel = "PATH", split = ",",
            description = "GGUF file(s) or Hugging Face checkpoint directories, comma-separated or repeated (default: the embedded stories260K).")
    List<Path> models = new ArrayList<>();

    @Option(names = {"-p", "--n-prompt"}, paramLabel = "N", split = ",", defaultValue = "512",
            description = "Prompt lengths for pp tests, comma-separated; 0 skips pp (default: ${DEFAULT-VALUE}).")
    List<Integer> prompts;

    @Option(names = {"-n", "--n-gen"}, paramLabel = "N", split = ",", defaultValue = "128",
            description = "Generated tokens for tg tests, comma-separated; 0 skips tg (default: ${DEFAULT-VALUE}).")
    List<Integer> gens;

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

    /** One timed test. */
    public record Measurement(String test, int prompt, int gen, double[] tokensPerSecond) {
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
        List<Integer> threadCounts = threads.isEmpty() ? List.of(Runtime.getRuntime().availableProcessors()) : threads;
        for (int t : threadCounts) if (t < 1) throw new IllegalArgumentException("-t must be >= 1, got " + t);
        List<Path> modelPaths = models.isEmpty() ? List.of(DefaultModel.path()) : models;
        for (Path m : modelPaths) if (!Files.exists(m)) throw new IllegalArgumentException("model " + m + " does not exist");
        List<KvCachePolicy> policies = PolicySpecs.parse(kv);

        List<Test> tests = new ArrayList<>();
        for (int p : prompts) if (p > 0) tests.add(new Test("pp" + p, p, 0));
        for (int g : gens) if (g > 0) tests.add(new Test("tg" + g, 0, g));
        if (tests.isEmpty()) throw new IllegalArgumentException("nothing to measure: every -p and -n is 0");

        Report report = new Report();
        long runs = (long) modelPaths.size() * threadCounts.size() * policies.size() * tests.size();
        try (ProgressBar bar = new ProgressBar("bench", runs)) {
            long done = 0;
            for (Path modelPath : modelPaths) {
                ModelWeights weights = ModelWeights.of(modelPath);
                for (int t : threadCounts) {
                    try (Backend be = Backends.select(backend, t);
                         LlamaModel model = LlamaModel.load(modelPath, be, t);
                         KvCacheManager kvm = new KvCacheManager(model.identity(), model.kvGeometry(), UNBOUNDED_KV)) {
                        for (KvCachePolicy policy : policies) {
                            for (Test test : tests) {
                                bar.suffix(model.name() + " t=" + t + " " + policy + " " + test.name());
                                bar.update(done);
                                Measurement m = measure(model, kvm, policy, test, repetitions, warmup, seed);
                                addRow(report, modelPath, model, weights, be, t, policy, m);
                                bar.update(++done);
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

    record Test(String name, int prompt, int gen) {}

    /** Times {@code test} {@code reps} times after {@code warmup} untimed runs; each run starts from an empty sequence. */
    static Measurement measure(LlamaModel model, KvCacheManager kvm, KvCachePolicy policy, Test test, int reps,
                               int warmup, long seed) {
        int needed = test.prompt() + test.gen();
        if (needed > model.config().contextLength()) {
            throw new IllegalArgumentException(test.name() + " needs " + needed + " positions; the model's context is "
                    + model.config().contextLength());
        }
        SplittableRandom rnd = new SplittableRandom(seed);
        int vocab = model.config().vocabSize();
        double[] tps = new double[reps];
        for (int r = -warmup; r < reps; r++) {
            try (PagedSequence seq = kvm.open(policy)) {
                long t0, t1;
                if (test.prompt() > 0) {
                    int[] prompt = rnd.ints(test.prompt(), 0, vocab).toArray();
                    t0 = System.nanoTime();
                    model.forward(List.of(new SequenceChunk(seq, prompt, false)));
                    t1 = System.nanoTime();
                    if (r >= 0) tps[r] = test.prompt() / ((t1 - t0) / 1e9);
                } else {
                    int[] tokens = rnd.ints(test.gen(), 0, vocab).toArray();
                    t0 = System.nanoTime();
                    for (int token : tokens) model.forward(List.of(new SequenceChunk(seq, new int[] {token}, false)));
                    t1 = System.nanoTime();
                    if (r >= 0) tps[r] = test.gen() / ((t1 - t0) / 1e9);
                }
            }
        }
        return new Measurement(test.name(), test.prompt(), test.gen(), tps);
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
        row.put("repetitions", m.tokensPerSecond().length);
        row.put("tps_mean", m.mean());
        row.put("tps_stddev", m.stddev());
        row.put("tps_samples", m.tokensPerSecond());
        boolean tg = m.gen() > 0;
        row.put("weight_bytes_per_token", tg ? (double) w.bytesPerDecodedToken() : Double.NaN);
        row.put("weight_gb_per_s", tg ? w.bytesPerDecodedToken() * m.mean() / 1e9 : Double.NaN);
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
                new Report.Column("weight GB/s", true, r -> Double.isNaN((Double) r.get("weight_gb_per_s")) ? ""
                        : String.format("%.2f", (Double) r.get("weight_gb_per_s"))));
    }
}
