package dev.kvserve.bench;

import dev.kvserve.http.cli.ModelOptions;
import dev.kvserve.http.cli.ProgressBar;
import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.Backends;
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

/** {@code kvserve bench offload}: the offload-tier table (see {@link OffloadBench}). */
@Command(name = "offload", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Serve long contexts from a primary KV pool --ratio times smaller than they are: recompute (no tier),",
                "host RAM, SSD with and without prefetch (full attention and Quest sparse recall), emulated computational",
                "storage. --sequences sequences of --prompt + --gen text tokens; prompts prefilled in --chunk chunks, then",
                "--gen teacher-forced decode steps with every sequence in one batch. Per configuration: decode tokens/s,",
                "prefetch hit rate, stall time, bytes moved per decode token, how many full-length sequences the primary",
                "budget admits, and the largest logit difference from the same policy all in the pool (0 = identical)."})
public final class OffloadBenchCommand implements Callable<Integer> {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Mixin ModelOptions modelOptions;

    @Option(names = {"-f", "--file"}, paramLabel = "TEXT", description = "UTF-8 text the sequences read (default: the shared tinystories_val.txt).")
    Path file;

    @Option(names = "--sequences", defaultValue = "4", description = "Concurrent long sequences (default: ${DEFAULT-VALUE}).")
    int sequences;

    @Option(names = "--prompt", defaultValue = "448", description = "Prompt tokens per sequence (default: ${DEFAULT-VALUE}).")
    int prompt;

    @Option(names = "--gen", defaultValue = "64", description = "Decode tokens per sequence (default: ${DEFAULT-VALUE}).")
    int gen;

    @Option(names = "--ratio", defaultValue = "4", description = "Bytes of all sequences at full length over the primary budget (default: ${DEFAULT-VALUE}).")
    double ratio;

    @Option(names = "--chunk", defaultValue = "64", description = "Prefill chunk (default: ${DEFAULT-VALUE}).")
    int chunk;

    @Option(names = "--format", defaultValue = "fp32", description = "KV storage format of every configuration (default: ${DEFAULT-VALUE}).")
    String format;

    @Option(names = "--quest", defaultValue = "128", description = "Quest token budget of the sparse configurations (default: ${DEFAULT-VALUE}).")
    int quest;

    @Option(names = "--host", defaultValue = "1073741824", description = "Host RAM budget of the host configuration in bytes (default: 1 GiB).")
    long host;

    @Option(names = "--ssd-dir", paramLabel = "DIR", description = "Directory for the SSD tier files; must be empty (default: a new temporary directory).")
    Path ssdDir;

    @Option(names = "--configs", split = ",", paramLabel = "NAME",
            description = "Configurations to run, comma-separated (default: all of recompute, host, ssd, ssd+prefetch, ssd+quest, ssd+quest+prefetch, csd).")
    List<String> configs = new ArrayList<>(OffloadBench.CONFIGS);

    @Option(names = {"-o", "--out"}, paramLabel = "FILE", description = "Also write the rows to FILE (.json or .csv).")
    Path outFile;

    @Override
    public Integer call() throws IOException {
        Path text = file != null ? file : defaultText();
        if (!Files.isRegularFile(text)) throw new IllegalArgumentException("text file " + text + " does not exist");
        boolean ownDir = ssdDir == null;
        Path dir = ownDir ? Files.createTempDirectory("kvserve-offload-") : ssdDir;
        var options = new OffloadBench.Options(sequences, prompt, gen, ratio, chunk, format, quest, host, dir, configs);
        int threads = modelOptions.threads();
        List<OffloadBench.Result> results;
        String modelName;
        try (Backend backend = Backends.select(modelOptions.backend(), threads);
             LlamaModel model = LlamaModel.load(modelOptions.modelPath(), backend, threads)) {
            modelName = model.name();
            int[] tokens = model.tokenizer().encode(Files.readString(text), true, false);
            System.err.printf("%s: %d sequences of %d + %d tokens from %s, primary budget = 1/%s of their KV; threads %d%n",
                    modelName, sequences, prompt, gen, text.getFileName(), ratio, threads);
            try (ProgressBar bar = new ProgressBar("offload", 1)) {
                results = OffloadBench.run(model, tokens, options, (config, done, total) -> {
                    bar.suffix(config);
                    bar.update(done * 1000 / total);
                });
            }
        } finally {
            if (ownDir) Files.deleteIfExists(dir);
        }
        Report report = report(modelName, results, options);
        spec.commandLine().getOut().print(table(report.rows()));
        spec.commandLine().getOut().flush();
        if (outFile != null) report.write(outFile);
        return 0;
    }

    private static Path defaultText() {
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            Path candidate = p.resolve("shared/data/tinystories_val.txt");
            if (Files.exists(candidate)) return candidate;
        }
        throw new IllegalArgumentException("no shared/data/tinystories_val.txt above the working directory; pass --file");
    }

    static Report report(String model, List<OffloadBench.Result> results, OffloadBench.Options o) {
        Report report = new Report();
        for (OffloadBench.Result r : results) {
            Map<String, Object> row = report.addRow();
            row.put("model", model);
            row.put("config", r.config());
            row.put("kv", r.policy());
            row.put("sequences", o.sequences());
            row.put("prompt", o.prompt());
            row.put("gen", o.gen());
            row.put("primary_budget_bytes", r.primaryBudget());
            row.put("sequence_bytes", r.sequenceBytes());
            row.put("admits", r.admits());
            row.put("concurrent", r.concurrent());
            row.put("prefill_seconds", r.prefillSeconds());
            row.put("decode_seconds", r.decodeSeconds());
            row.put("decode_tokens", r.decodeTokens());
            row.put("decode_tokens_per_s", r.served() ? r.decodeTokensPerSecond() : Double.NaN);
            row.put("prefetch_hit_rate", r.decodeTiers().prefetchHitRate());
            row.put("prefetch_issued", r.decodeTiers().prefetchIssued());
            row.put("prefetch_hits", r.decodeTiers().prefetchHits());
            row.put("prefetch_late", r.decodeTiers().prefetchLate());
            row.put("demand_reads", r.decodeTiers().demandReads());
            row.put("stall_ms", r.stallMillis());
            row.put("bytes_up_per_token", r.bytesUpPerToken());
            row.put("bytes_down_per_token", r.bytesDownPerToken());
            row.put("ssd_read_per_token", r.ssdReadPerToken());
            row.put("csd_link_per_token", r.csdLinkPerToken());
            row.put("csd_internal_per_token", r.csdInternalPerToken());
            row.put("ssd_bytes_written_total", r.allTiers().ssdBytesWritten());
            row.put("lost_blocks", r.allTiers().lostBlocks());
            row.put("ppl", r.ppl());
            row.put("max_abs_logit_diff", r.maxAbsLogitDiff());
            row.put("jit_noise", r.jitNoise());
            row.put("disk_clean", r.diskClean());
            row.put("note", r.note());
        }
        return report;
    }

    static String table(List<Map<String, Object>> rows) {
        return Report.markdown(List.of(
                new Report.Column("config", false, r -> (String) r.get("config")),
                new Report.Column("admits", true, r -> r.get("admits").toString()),
                new Report.Column("ran", true, r -> r.get("concurrent").toString()),
                new Report.Column("decode tok/s", true, r -> num("%.1f", r.get("decode_tokens_per_s"))),
                new Report.Column("prefill s", true, r -> num("%.2f", r.get("prefill_seconds"))),
                new Report.Column("hit rate", true, r -> num("%.2f", r.get("prefetch_hit_rate"))),
                new Report.Column("stall ms", true, r -> num("%.1f", r.get("stall_ms"))),
                new Report.Column("up B/tok", true, r -> num("%.0f", r.get("bytes_up_per_token"))),
                new Report.Column("down B/tok", true, r -> num("%.0f", r.get("bytes_down_per_token"))),
                new Report.Column("SSD read B/tok", true, r -> num("%.0f", r.get("ssd_read_per_token"))),
                new Report.Column("CSD internal B/tok", true, r -> num("%.0f", r.get("csd_internal_per_token"))),
                new Report.Column("CSD link B/tok", true, r -> num("%.0f", r.get("csd_link_per_token"))),
                new Report.Column("PPL", true, r -> num("%.4f", r.get("ppl"))),
                new Report.Column("max |Δlogit|", true, r -> num("%.2g", r.get("max_abs_logit_diff"))),
                new Report.Column("JIT noise", true, r -> num("%.2g", r.get("jit_noise"))),
                new Report.Column("disk clean", false, r -> r.get("disk_clean").toString()),
                new Report.Column("note", false, r -> (String) r.get("note"))), rows);
    }

    private static String num(String format, Object v) {
        double d = ((Number) v).doubleValue();
        return Double.isNaN(d) ? "–" : String.format(format, d);
    }
}
