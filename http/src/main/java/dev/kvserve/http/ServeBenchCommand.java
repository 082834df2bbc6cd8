package dev.kvserve.http;

import dev.kvserve.http.cli.ProgressBar;
import dev.kvserve.http.openai.Json;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code kvserve bench serve}: load-test a running server. */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = {"Benchmark a running OpenAI-compatible server the way vLLM's benchmark_serving does:",
                "streamed completions at a fixed concurrency; throughput, TTFT, TPOT and inter-token latency."})
public final class ServeBenchCommand implements Callable<Integer> {

    @Option(names = "--url", defaultValue = "http://127.0.0.1:8080", description = "Server base URL (default: ${DEFAULT-VALUE}).")
    String url;

    @Option(names = "--model", description = "Model name to request (default: the first one /v1/models lists).")
    String model;

    @Option(names = {"-c", "--concurrency"}, defaultValue = "8", description = "Requests in flight (default: ${DEFAULT-VALUE}).")
    int concurrency;

    @Option(names = {"-n", "--requests"}, defaultValue = "64", description = "Requests in total (default: ${DEFAULT-VALUE}).")
    int requests;

    @Option(names = "--prompt-len", defaultValue = "128", description = "Prompt tokens per request, approximately (default: ${DEFAULT-VALUE}).")
    int promptLength;

    @Option(names = "--gen-len", defaultValue = "128", description = "Generated tokens per request, exactly (default: ${DEFAULT-VALUE}).")
    int generationLength;

    @Option(names = "--kv", paramLabel = "SPEC", description = "KV policy each request asks for (\"kv_policy\"; default: the server's).")
    String kv;

    @Option(names = "--seed", defaultValue = "0", description = "Seed of the random prompts (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = {"-o", "--out"}, paramLabel = "FILE",
            description = "Also write results: .json (summary and every request) or .csv (one summary row, appended).")
    Path out;

    @Override
    public Integer call() throws Exception {
        if (out != null) {
            String name = out.getFileName().toString().toLowerCase(Locale.ROOT);
            if (!name.endsWith(".json") && !name.endsWith(".csv")) {
                throw new IllegalArgumentException("--out must end in .json or .csv, got " + out);
            }
        }
        URI base = URI.create(url.endsWith("/") ? url : url + "/");
        if (base.getScheme() == null || !base.getScheme().startsWith("http")) {
            throw new IllegalArgumentException("--url must be an http:// or https:// URL, got " + url);
        }
        ServeBench.Summary summary;
        try (ServeBench bench = new ServeBench(new ServeBench.Config(base, model, concurrency, requests, promptLength,
                generationLength, kv, seed));
             ProgressBar bar = new ProgressBar("requests", requests)) {
            bar.update(0);
            summary = bench.run(bar::update);
        }
        System.out.print(ServeBench.report(summary));
        if (out != null) write(summary);
        if (summary.failed() > 0) {
            System.err.println("first failure: " + summary.requests().stream().filter(r -> !r.success()).findFirst()
                    .map(ServeBench.RequestResult::error).orElse("?"));
        }
        return summary.completed() > 0 ? 0 : 1;
    }

    private void write(ServeBench.Summary summary) throws java.io.IOException {
        if (out.getParent() != null) Files.createDirectories(out.getParent());
        if (out.getFileName().toString().toLowerCase(Locale.ROOT).endsWith(".json")) {
            Files.write(out, Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsBytes(ServeBench.json(summary)));
        } else {
            boolean fresh = !Files.exists(out) || Files.size(out) == 0;
            if (!fresh) {
                String header = Files.readAllLines(out, StandardCharsets.UTF_8).getFirst();
                if (!header.equals(ServeBench.CSV_HEADER)) {
                    throw new IllegalArgumentException(out + " holds a different CSV header; write to a new file");
                }
            }
            String text = (fresh ? ServeBench.CSV_HEADER + "\n" : "") + ServeBench.csvRow(summary) + "\n";
            Files.writeString(out, text, StandardCharsets.UTF_8, java.nio.file.StandardOpenOption.CREATE,
                    java.nio.file.StandardOpenOption.APPEND);
        }
        System.err.println("results written to " + out);
    }
}
