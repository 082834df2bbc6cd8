package dev.kvserve.bench;

import dev.kvserve.http.cli.ModelOptions;
import dev.kvserve.http.cli.ProgressBar;
import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.Backends;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.runtime.eval.NeedleEval;
import dev.kvserve.runtime.eval.NeedleTask;
import dev.kvserve.runtime.model.LlamaModel;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code kvserve kv-eval}: quality and real memory of KV-cache policies side by side. One row per
 * policy: perplexity through the decode path with the bytes per token the pool actually held (see
 * {@link KvEval}), or needle retrieval with the pool's peak bytes (see {@link NeedleEval}).
 */
@Command(name = "kv-eval", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Compare KV-cache policies: quality (perplexity or needle) and the KV bytes per token really held.",
                "",
                "Perplexity runs the text token by token through the decode path, so eviction acts as while serving;",
                "memory is measured from the pool after every step and compared with an fp16 cache of the same tokens.",
                "",
                "--kv takes policy specs separated by commas, or the option repeated. Commas inside a spec's",
                "parameters are fine: a piece written key=value continues the spec before it, so",
                "  --kv fp16,int8,sink:sinks=4,window=64",
                "is the three policies fp16 | int8 | sink:sinks=4,window=64 (a spec without a format stores fp32).",
                "",
                "--task needle: the runtime's needle-in-a-haystack prompts (a name at --depth of a --len-token story,",
                "then a cue to say it); accuracy next to a control without the name, and the pool's peak bytes",
                "against an fp16 cache on the same prompts. No --file needed."})
public final class KvEvalCommand implements Callable<Integer> {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    /** Tables go to the command line's writer (stdout, or what a test installs); progress to stderr. */
    private java.io.PrintWriter out() {
        return spec.commandLine().getOut();
    }

    private static final long UNBOUNDED_KV = 1L << 40;

    @Mixin ModelOptions modelOptions;

    @Option(names = {"-f", "--file"}, paramLabel = "TEXT", description = "UTF-8 text to score (perplexity).")
    Path file;

    @Option(names = "--kv", required = true, paramLabel = "SPEC[,SPEC...]",
            description = "KV-cache policies to compare (comma-separated and/or repeated).")
    List<String> kv;

    @Option(names = {"-c", "--ctx"}, defaultValue = "512",
            description = "Window length: the text runs in consecutive windows of this many tokens, each from an empty cache (default: ${DEFAULT-VALUE}).")
    int ctx;

    @Option(names = "--prefill", defaultValue = "0", paramLabel = "P",
            description = "Run the first P tokens of each window (or needle prompt) as one prompt chunk; the rest goes one token per step (default: ${DEFAULT-VALUE}).")
    int prefill;

    @Option(names = "--max-tokens", defaultValue = "0", paramLabel = "T",
            description = "Evaluate only the first T tokens of the text (default: all).")
    int maxTokens;

    @Option(names = "--task", defaultValue = "perplexity", paramLabel = "perplexity|needle",
            description = "What to measure (default: ${DEFAULT-VALUE}).")
    String task;

    @Option(names = "--len", defaultValue = "200", paramLabel = "N", split = ",",
            description = "Needle: prompt length(s) in tokens, comma-separated (default: ${DEFAULT-VALUE}).")
    List<Integer> lens;

    @Option(names = "--depth", defaultValue = "0.1,0.5,0.9", paramLabel = "D", split = ",",
            description = "Needle: relative depth(s) 0..1 of the needle in the haystack, comma-separated (default: ${DEFAULT-VALUE}).")
    List<Double> depths;

    @Option(names = "--trials", defaultValue = "20", paramLabel = "K", description = "Needle: prompts per length and depth (default: ${DEFAULT-VALUE}).")
    int trials;

    @Option(names = "--seed", defaultValue = "1000", description = "Needle: seed of the first prompt; trial i uses seed+i (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--cue", defaultValue = "i_am", paramLabel = "i_am|my_name",
            description = "Needle: the question's wording (default: ${DEFAULT-VALUE}; TinyStories-656K answers my_name better).")
    String cue;

    @Option(names = "--question", defaultValue = "decode", paramLabel = "decode|prompt",
            description = {"Needle: decode feeds the question token by token after the haystack's prefill, so the cache is",
                    "compressed before the question is known; prompt prefills it with the haystack (default: ${DEFAULT-VALUE})."})
    String questionMode;

    @Option(names = "--answer-tokens", defaultValue = "12", paramLabel = "N",
            description = "Needle: greedy tokens generated after the question (default: ${DEFAULT-VALUE}).")
    int answerTokens;

    @Option(names = "--no-control", description = "Needle: skip the control run (full cache, name left out of the needle).")
    boolean noControl;

    @Option(names = {"-o", "--out"}, paramLabel = "FILE", description = "Also write the rows to FILE (.json or .csv).")
    Path outFile;

    @Override
    public Integer call() {
        if (maxTokens < 0) throw new IllegalArgumentException("--max-tokens must be >= 0, got " + maxTokens);
        if (!task.equals("perplexity") && !task.equals("needle")) {
            throw new IllegalArgumentException("unknown --task '" + task + "'; use perplexity or needle");
        }
        List<KvCachePolicy> policies = PolicySpecs.parse(kv);
        if (outFile != null) Report.checkName(outFile);
        String text = null;
        if (task.equals("perplexity")) {
            if (file == null) throw new IllegalArgumentException("--task perplexity needs the text to score (--file)");
            if (!Files.isRegularFile(file)) throw new IllegalArgumentException("text file " + file + " does not exist");
            try {
                text = Files.readString(file);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
            }
        }
        int threads = modelOptions.threads();
        try (Backend backend = Backends.select(modelOptions.backend(), threads);
             LlamaModel model = LlamaModel.load(modelOptions.modelPath(), backend, threads);
             KvCacheManager kvm = new KvCacheManager(model.identity(), model.kvGeometry(), UNBOUNDED_KV)) {
            Report report = task.equals("needle") ? needle(model, kvm, policies) : perplexity(model, kvm, policies, text);
            if (outFile != null) report.write(outFile);
            out().flush();
        }
        return 0;
    }

    private Report perplexity(LlamaModel model, KvCacheManager kvm, List<KvCachePolicy> policies, String text) {
        int[] tokens = model.tokenizer().encode(text, true, false);
        KvEval.Options options = new KvEval.Options(ctx, prefill, maxTokens);
        int used = KvEval.tokensUsed(tokens.length, options);
        System.err.printf("%s: %d tokens, evaluating %d in windows of %d%s; model %s, KV cache blocks of %d tokens%n",
                file.getFileName(), tokens.length, used, ctx, prefill > 0 ? ", prefill " + prefill : "", model.name(),
                kvm.blockTokens());
        // The first policy would otherwise also pay for JIT compilation: run each briefly, untimed.
        KvEval.Options warmup = new KvEval.Options(Math.min(ctx, 128), Math.min(prefill, 64), 256);
        for (KvCachePolicy policy : policies) KvEval.run(model, kvm, policy, tokens, warmup, null);
        Report report = new Report();
        for (KvCachePolicy policy : policies) {
            KvEval.Result r;
            try (ProgressBar bar = new ProgressBar(policy.toString(), used)) {
                r = KvEval.run(model, kvm, policy, tokens, options,
                        (done, ppl) -> bar.suffix(String.format("ppl %.4f", ppl)).update(done));
            }
            Map<String, Object> row = report.addRow();
            row.put("model", model.name());
            row.put("file", file.toString());
            row.put("kv", r.policy());
            row.put("ctx", ctx);
            row.put("prefill", prefill);
            row.put("windows", r.windows());
            row.put("tokens", r.tokens());
            row.put("predictions", r.predictions());
            row.put("ppl", r.ppl());
            row.put("ppl_error", r.pplError());
            row.put("mean_nll", r.meanNll());
            row.put("kv_bytes_per_token_avg", r.bytesPerToken());
            row.put("kv_bytes_per_token_end", r.bytesPerTokenEnd());
            row.put("fp16_bytes_per_token_avg", r.fp16BytesPerToken());
            row.put("ratio_vs_fp16_avg", r.ratio());
            row.put("ratio_vs_fp16_end", r.ratioEnd());
            row.put("peak_kv_bytes", r.peakBytes());
            row.put("seconds", r.seconds());
            row.put("tokens_per_s", r.tokensPerSecond());
            // rewritten after every policy: a long grid stopped half-way keeps its finished rows
            if (outFile != null) report.write(outFile);
        }
        out().print(Report.markdown(List.of(
                new Report.Column("kv", false, r -> (String) r.get("kv")),
                new Report.Column("tokens", true, r -> r.get("predictions").toString()),
                new Report.Column("PPL", true, r -> String.format("%.4f ± %.4f", (Double) r.get("ppl"), (Double) r.get("ppl_error"))),
                new Report.Column("KV B/token avg", true, r -> String.format("%.1f", (Double) r.get("kv_bytes_per_token_avg"))),
                new Report.Column("KV B/token end", true, r -> String.format("%.1f", (Double) r.get("kv_bytes_per_token_end"))),
                new Report.Column("vs fp16 avg", true, r -> String.format("%.2fx", (Double) r.get("ratio_vs_fp16_avg"))),
                new Report.Column("vs fp16 end", true, r -> String.format("%.2fx", (Double) r.get("ratio_vs_fp16_end"))),
                new Report.Column("tok/s", true, r -> String.format("%.1f", (Double) r.get("tokens_per_s")))), report.rows()));
        return report;
    }

    /**
     * The needle prompts and their scoring are the runtime's ({@link NeedleEval}, {@link NeedleTask}):
     * every policy answers the same seeded prompts. Memory is the pool's peak bytes per trial, set
     * against the same prompts run with an fp16 cache.
     */
    private Report needle(LlamaModel model, KvCacheManager kvm, List<KvCachePolicy> policies) {
        NeedleTask.Cue cueValue = enumOption("--cue", cue, NeedleTask.Cue.class);
        NeedleEval.QuestionMode mode = enumOption("--question", questionMode, NeedleEval.QuestionMode.class);
        KvCachePolicy fp16 = KvCachePolicy.parse("fp16");
        Report report = new Report();
        System.err.printf("needle: %d prompts per length %s and depth %s, cue %s, question %s; model %s%n", trials, lens, depths,
                cueValue, mode, model.name());
        for (int len : lens) {
            for (double depth : depths) {
                NeedleEval.Config config = new NeedleEval.Config(len, depth, trials, seed, mode, cueValue, answerTokens);
                int runs = policies.size() + (noControl ? 0 : 1) + (policies.contains(fp16) ? 0 : 1);
                Map<String, NeedleEval.Result> results = new java.util.LinkedHashMap<>();
                try (ProgressBar bar = new ProgressBar("needle len=" + len + " depth=" + depth, runs)) {
                    int done = 0;
                    if (!noControl) {
                        results.put("control", NeedleEval.run(model, kvm, null, config));
                        bar.update(++done);
                    }
                    NeedleEval.Result reference = NeedleEval.run(model, kvm, fp16.toString(), config);
                    bar.update(++done);
                    for (KvCachePolicy policy : policies) {
                        NeedleEval.Result r = policy.equals(fp16) ? reference : NeedleEval.run(model, kvm, policy.toString(), config);
                        results.put(policy.toString(), r);
                        if (!policy.equals(fp16)) bar.update(++done);
                    }
                    NeedleEval.Result control = results.remove("control");
                    for (NeedleEval.Result r : results.values()) addNeedleRow(report, model, r, control, reference);
                }
            }
        }
        out().print(Report.markdown(List.of(
                new Report.Column("kv", false, r -> (String) r.get("kv")),
                new Report.Column("len", true, r -> r.get("len").toString()),
                new Report.Column("depth", true, r -> r.get("depth").toString()),
                new Report.Column("accuracy", true, r -> String.format("%.2f", (Double) r.get("accuracy"))),
                new Report.Column("control", true, r -> Double.isNaN((Double) r.get("control_accuracy")) ? ""
                        : String.format("%.2f", (Double) r.get("control_accuracy"))),
                new Report.Column("kept tokens/head", true, r -> String.format("%.0f", (Double) r.get("kept_tokens_per_head"))),
                new Report.Column("peak KV bytes", true, r -> String.format("%,d", (Long) r.get("peak_kv_bytes"))),
                new Report.Column("vs fp16", true, r -> String.format("%.2fx", (Double) r.get("ratio_vs_fp16_peak"))),
                new Report.Column("first answer", false, r -> '"' + ((String) r.get("first_answer")).replace("\n", "\\n").replace("|", "\\|") + '"')),
                report.rows()));
        return report;
    }

    private void addNeedleRow(Report report, LlamaModel model, NeedleEval.Result r, NeedleEval.Result control,
                              NeedleEval.Result fp16) {
        Map<String, Object> row = report.addRow();
        row.put("model", model.name());
        row.put("kv", r.policy());
        row.put("len", r.length());
        row.put("depth", r.depth());
        row.put("cue", cue);
        row.put("question", questionMode);
        row.put("trials", r.trials());
        row.put("hits", r.hits());
        row.put("accuracy", r.accuracy());
        row.put("control_accuracy", control == null ? Double.NaN : control.accuracy());
        row.put("kept_tokens_per_head", r.keptTokens());
        row.put("peak_kv_bytes", r.peakBytes());
        row.put("fp16_peak_kv_bytes", fp16.peakBytes());
        row.put("ratio_vs_fp16_peak", fp16.peakBytes() / (double) r.peakBytes());
        row.put("first_answer", r.answers().isEmpty() ? "" : r.answers().getFirst());
    }

    private static <E extends Enum<E>> E enumOption(String option, String value, Class<E> type) {
        for (E e : type.getEnumConstants()) if (e.name().equalsIgnoreCase(value)) return e;
        throw new IllegalArgumentException(option + " '" + value + "' is not one of "
                + java.util.Arrays.stream(type.getEnumConstants()).map(e -> e.name().toLowerCase(java.util.Locale.ROOT)).toList());
    }

}
