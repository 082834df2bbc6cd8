package dev.kvserve.bench;

import dev.kvserve.http.cli.ModelOptions;
import dev.kvserve.http.cli.ProgressBar;
import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.Backends;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvCachePolicy;
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
 * policy: perplexity through the decode path (see {@link KvEval}) or needle accuracy (see
 * {@link NeedleTask}), with the bytes per token the pool actually held.
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
                "--task needle: a name hidden at --depth of --len tokens of filler built from --file, asked at the end;",
                "accuracy is how often the greedy answer starts with it, next to a no-needle baseline (the model's prior)."})
public final class KvEvalCommand implements Callable<Integer> {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    /** Tables go to the command line's writer (stdout, or what a test installs); progress to stderr. */
    private java.io.PrintWriter out() {
        return spec.commandLine().getOut();
    }

    private static final long UNBOUNDED_KV = 1L << 40;

    @Mixin ModelOptions modelOptions;

    @Option(names = {"-f", "--file"}, required = true, paramLabel = "TEXT",
            description = "UTF-8 text: the text to score, or the needle task's filler.")
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

    @Option(names = "--len", defaultValue = "256", paramLabel = "N", split = ",",
            description = "Needle: prompt length(s) in tokens, comma-separated (default: ${DEFAULT-VALUE}).")
    List<Integer> lens;

    @Option(names = "--depth", defaultValue = "0.5", paramLabel = "D", split = ",",
            description = "Needle: relative depth(s) 0..1 of the needle in the filler, comma-separated (default: ${DEFAULT-VALUE}).")
    List<Double> depths;

    @Option(names = "--trials", defaultValue = "20", paramLabel = "K", description = "Needle: trials per depth (default: ${DEFAULT-VALUE}).")
    int trials;

    @Option(names = "--seed", defaultValue = "7", description = "Needle: seed for names and filler positions (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--needle", defaultValue = NeedleTask.DEFAULT_NEEDLE, paramLabel = "FORMAT",
            description = "Needle: the hidden sentence, %%s is the name (default: '${DEFAULT-VALUE}').")
    String needle;

    @Option(names = "--question", defaultValue = NeedleTask.DEFAULT_QUESTION, paramLabel = "TEXT",
            description = "Needle: the prompt's last words, which the name should complete (default: '${DEFAULT-VALUE}').")
    String question;

    @Option(names = "--no-baseline", description = "Needle: skip the no-needle runs that measure the model's prior.")
    boolean noBaseline;

    @Option(names = {"-o", "--out"}, paramLabel = "FILE", description = "Also write the rows to FILE (.json or .csv).")
    Path outFile;

    @Override
    public Integer call() {
        if (!Files.isRegularFile(file)) throw new IllegalArgumentException("text file " + file + " does not exist");
        if (maxTokens < 0) throw new IllegalArgumentException("--max-tokens must be >= 0, got " + maxTokens);
        List<KvCachePolicy> policies = PolicySpecs.parse(kv);
        String text;
        try {
            text = Files.readString(file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
        int threads = modelOptions.threads();
        try (Backend backend = Backends.select(modelOptions.backend(), threads);
             LlamaModel model = LlamaModel.load(modelOptions.modelPath(), backend, threads);
             KvCacheManager kvm = new KvCacheManager(model.kvGeometry(), UNBOUNDED_KV)) {
            Report report = switch (task) {
                case "perplexity" -> perplexity(model, kvm, policies, text);
                case "needle" -> needle(model, kvm, policies, text);
                default -> throw new IllegalArgumentException("unknown --task '" + task + "'; use perplexity or needle");
            };
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

    private Report needle(LlamaModel model, KvCacheManager kvm, List<KvCachePolicy> policies, String text) {
        NeedleTask nt = new NeedleTask(model.tokenizer(), text, needle, question);
        Report report = new Report();
        System.err.printf("needle: %d trials at depth(s) %s of %s tokens; model %s%n", trials, depths, lens, model.name());
        for (int len : lens) for (double depth : depths) {
            List<NeedleTask.Trial> with = nt.trials(len, depth, trials, seed, true);
            List<NeedleTask.Trial> without = noBaseline ? List.of() : nt.trials(len, depth, trials, seed, false);
            for (KvCachePolicy policy : policies) {
                Tally hit = new Tally(), prior = new Tally();
                try (ProgressBar bar = new ProgressBar(policy + " d=" + depth, with.size() + without.size())) {
                    int done = 0;
                    for (NeedleTask.Trial t : with) {
                        hit.add(nt.ask(model, kvm, policy, t, prefill));
                        bar.suffix(String.format("acc %d/%d", hit.correct, hit.n)).update(++done);
                    }
                    for (NeedleTask.Trial t : without) {
                        prior.add(nt.ask(model, kvm, policy, t, prefill));
                        bar.update(++done);
                    }
                }
                Map<String, Object> row = report.addRow();
                row.put("model", model.name());
                row.put("file", file.toString());
                row.put("kv", policy.toString());
                row.put("len", len);
                row.put("depth", depth);
                row.put("prefill", prefill);
                row.put("trials", hit.n);
                row.put("mean_prompt_tokens", hit.promptTokens / (double) hit.n);
                row.put("accuracy", hit.correct / (double) hit.n);
                row.put("baseline_accuracy", prior.n == 0 ? Double.NaN : prior.correct / (double) prior.n);
                row.put("kv_bytes_per_token_end", hit.held / (double) hit.promptTokens);
                row.put("ratio_vs_fp16_end", hit.fp16 / (double) hit.held);
                row.put("tokens_per_s", hit.promptTokens / hit.seconds);
                row.put("example_answer", hit.example);
            }
        }
        out().print(Report.markdown(List.of(
                new Report.Column("kv", false, r -> (String) r.get("kv")),
                new Report.Column("len", true, r -> String.format("%.0f", (Double) r.get("mean_prompt_tokens"))),
                new Report.Column("depth", true, r -> r.get("depth").toString()),
                new Report.Column("accuracy", true, r -> String.format("%.2f", (Double) r.get("accuracy"))),
                new Report.Column("no-needle baseline", true, r -> Double.isNaN((Double) r.get("baseline_accuracy")) ? ""
                        : String.format("%.2f", (Double) r.get("baseline_accuracy"))),
                new Report.Column("KV B/token", true, r -> String.format("%.1f", (Double) r.get("kv_bytes_per_token_end"))),
                new Report.Column("vs fp16", true, r -> String.format("%.2fx", (Double) r.get("ratio_vs_fp16_end"))),
                new Report.Column("tok/s", true, r -> String.format("%.1f", (Double) r.get("tokens_per_s"))),
                new Report.Column("example answer", false, r -> '"' + ((String) r.get("example_answer")).replace("\n", "\\n").replace("|", "\\|") + '"')),
                report.rows()));
        return report;
    }

    /** Running counts of needle outcomes. */
    private static final class Tally {
        int n, correct;
        long held, fp16, promptTokens;
        double seconds;
        String example = "";

        void add(NeedleTask.Outcome o) {
            if (n == 0) example = o.trial().name() + " -> " + o.answer();
            n++;
            if (o.correct()) correct++;
            held += o.bytesHeld();
            fp16 += o.fp16Bytes();
            promptTokens += o.trial().prompt().length;
            seconds += o.seconds();
        }
    }
}
