package dev.kvserve.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kvserve.http.openai.Json;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntConsumer;
import java.util.stream.Stream;

/**
 * Load generator for an OpenAI-compatible server, measuring what vLLM's benchmark_serving measures:
 * {@code requests} streamed completions, at most {@code concurrency} in flight, each with a prompt of
 * about {@code promptLength} tokens and exactly {@code generationLength} generated ones
 * ({@code ignore_eos}). Every request is timed from send to each SSE chunk: time to first token,
 * inter-token latency (between chunks), time per output token and end-to-end latency.
 *
 * <p>Prompts are random words, different for every request so no prefix is shared. The client has
 * no tokenizer: one calibration request measures the server's tokens per word and prompt sizes are
 * scaled to it; the token counts reported are the server's own ({@code usage}).
 */
public final class ServeBench implements AutoCloseable {

    /** What to run. {@code kvPolicy} and {@code model} may be null (server defaults). */
    public record Config(URI url, String model, int concurrency, int requests, int promptLength, int generationLength,
                         String kvPolicy, long seed) {
        public Config {
            if (concurrency < 1) throw new IllegalArgumentException("--concurrency must be >= 1, got " + concurrency);
            if (requests < 1) throw new IllegalArgumentException("--requests must be >= 1, got " + requests);
            if (promptLength < 1) throw new IllegalArgumentException("--prompt-len must be >= 1, got " + promptLength);
            if (generationLength < 1) throw new IllegalArgumentException("--gen-len must be >= 1, got " + generationLength);
            // Endpoints resolve against the base, which may carry a path prefix (a proxy).
            if (!url.getPath().endsWith("/")) url = URI.create(url + "/");
        }
    }

    /** One request's measurements; times in milliseconds, NaN when not applicable. */
    public record RequestResult(int index, boolean success, String error, int promptTokens, int outputTokens,
                                double ttftMs, double latencyMs, double[] interTokenMs) {
        /** Time per output token after the first, as vLLM defines TPOT. */
        public double tpotMs() {
            return outputTokens > 1 ? (latencyMs - ttftMs) / (outputTokens - 1) : Double.NaN;
        }
    }

    /** The run's totals. */
    public record Summary(Config config, String model, double durationSeconds, int completed, int failed,
                          long promptTokens, long outputTokens, LatencySummary ttft, LatencySummary tpot,
                          LatencySummary itl, LatencySummary e2e, List<RequestResult> requests, ServerLoad load) {

        public double requestThroughput() {
            return completed / durationSeconds;
        }

        public double outputThroughput() {
            return outputTokens / durationSeconds;
        }

        public double totalTokenThroughput() {
            return (promptTokens + outputTokens) / durationSeconds;
        }
    }

    /**
     * What the server's {@code /metrics} said while the run went on, sampled every
     * {@link #METRICS_PERIOD_MS} ms: how many sequences it held at once (at a concurrency above what
     * its KV budget holds, the peak is what the budget admits under the policy), its KV bytes, and
     * the preemptions during the run. -1 where the server exposes no such metric.
     */
    public record ServerLoad(int peakRunning, int peakWaiting, long peakKvBytes, long preemptions) {
        static final ServerLoad UNKNOWN = new ServerLoad(-1, -1, -1, -1);
    }

    static final long METRICS_PERIOD_MS = 50;

    private static final String[] WORDS = ("the a little girl boy dog cat sun tree house park ball happy sad big small "
            + "red blue green went saw played ran jumped said looked found wanted loved friend mom dad day night "
            + "bird fish car toy box water sky flower garden school book story time and with to in on under over "
            + "very too soon then again always never quick slow bright dark warm cold").split(" ");

    private final Config config;
    private final HttpClient client;

    public ServeBench(Config config) {
        this.config = config;
        this.client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(10))
                .executor(Executors.newVirtualThreadPerTaskExecutor()).build();
    }

    @Override
    public void close() {
        client.shutdownNow();
    }

    /** Runs the benchmark; {@code progress} hears the number of requests finished so far. */
    public Summary run(IntConsumer progress) throws IOException, InterruptedException {
        String model = config.model() != null ? config.model() : servedModel();
        double tokensPerWord = calibrate(model);
        int words = Math.max(1, (int) Math.round(config.promptLength() / tokensPerWord));
        Random random = new Random(config.seed());
        List<String> prompts = new ArrayList<>(config.requests());
        for (int i = 0; i < config.requests(); i++) prompts.add(randomWords(random, words));

        RequestResult[] results = new RequestResult[config.requests()];
        AtomicInteger next = new AtomicInteger();
        AtomicInteger done = new AtomicInteger();
        MetricsWatch watch = new MetricsWatch();
        long start = System.nanoTime();
        try (ExecutorService workers = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<?>> running = new ArrayList<>();
            for (int w = 0; w < Math.min(config.concurrency(), config.requests()); w++) {
                running.add(workers.submit(() -> {
                    for (int i; (i = next.getAndIncrement()) < config.requests(); ) {
                        results[i] = send(i, model, prompts.get(i));
                        progress.accept(done.incrementAndGet());
                    }
                    return null;
                }));
            }
            for (Future<?> f : running) {
                try {
                    f.get();
                } catch (java.util.concurrent.ExecutionException e) {
                    throw new IllegalStateException("a benchmark worker failed: " + e.getCause(), e.getCause());
                }
            }
        }
        double duration = (System.nanoTime() - start) / 1e9;
        return summarize(model, duration, List.of(results), watch.stop());
    }

    /** Samples the server's gauges on a virtual thread until {@link #stop}. */
    private final class MetricsWatch {
        private final Thread thread;
        private volatile boolean running = true;
        private final Long preemptionsBefore;
        private int peakRunning = -1;
        private int peakWaiting = -1;
        private long peakKvBytes = -1;
        private Long preemptionsAfter;

        MetricsWatch() throws InterruptedException {
            preemptionsBefore = scrape();
            thread = Thread.ofVirtual().name("serve-bench-metrics").start(() -> {
                try {
                    while (running) {
                        preemptionsAfter = scrape();
                        Thread.sleep(METRICS_PERIOD_MS);
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            });
        }

        ServerLoad stop() throws InterruptedException {
            running = false;
            thread.join();
            preemptionsAfter = scrape();
            long preemptions = preemptionsBefore != null && preemptionsAfter != null ? preemptionsAfter - preemptionsBefore : -1;
            return new ServerLoad(peakRunning, peakWaiting, peakKvBytes, preemptions);
        }

        /** One sample; returns the preemption counter (null when the server has no metrics). */
        private Long scrape() throws InterruptedException {
            String text;
            try {
                HttpResponse<String> r = client.send(HttpRequest.newBuilder(config.url().resolve("metrics"))
                        .timeout(Duration.ofSeconds(10)).GET().build(), HttpResponse.BodyHandlers.ofString());
                if (r.statusCode() != 200) return null;
                text = r.body();
            } catch (IOException e) {
                return null;
            }
            Long preemptions = null;
            long kvBytes = -1;
            for (String line : text.split("\n")) {
                if (line.startsWith("#") || line.isBlank()) continue;
                int space = line.lastIndexOf(' ');
                String name = line.substring(0, space);
                double value;
                try {
                    value = Double.parseDouble(line.substring(space + 1));
                } catch (NumberFormatException e) {
                    continue;
                }
                if (name.equals("kvserve_requests_running")) peakRunning = Math.max(peakRunning, (int) value);
                else if (name.equals("kvserve_requests_waiting")) peakWaiting = Math.max(peakWaiting, (int) value);
                else if (name.equals("kvserve_preemptions_total")) preemptions = (long) value;
                else if (name.startsWith("kvserve_kv_bytes_used")) kvBytes = Math.max(kvBytes, 0) + (long) value;
            }
            peakKvBytes = Math.max(peakKvBytes, kvBytes);
            return preemptions;
        }
    }

    Summary summarize(String model, double durationSeconds, List<RequestResult> results) {
        return summarize(model, durationSeconds, results, ServerLoad.UNKNOWN);
    }

    Summary summarize(String model, double durationSeconds, List<RequestResult> results, ServerLoad load) {
        int completed = 0;
        long promptTokens = 0;
        long outputTokens = 0;
        List<Double> ttft = new ArrayList<>();
        List<Double> tpot = new ArrayList<>();
        List<Double> itl = new ArrayList<>();
        List<Double> e2e = new ArrayList<>();
        for (RequestResult r : results) {
            if (!r.success()) continue;
            completed++;
            promptTokens += r.promptTokens();
            outputTokens += r.outputTokens();
            ttft.add(r.ttftMs());
            if (!Double.isNaN(r.tpotMs())) tpot.add(r.tpotMs());
            for (double v : r.interTokenMs()) itl.add(v);
            e2e.add(r.latencyMs());
        }
        return new Summary(config, model, durationSeconds, completed, results.size() - completed, promptTokens, outputTokens,
                summary(ttft), summary(tpot), summary(itl), summary(e2e), results, load);
    }

    private static LatencySummary summary(List<Double> values) {
        return LatencySummary.of(values.stream().mapToDouble(Double::doubleValue).toArray());
    }

    private String servedModel() throws IOException, InterruptedException {
        HttpResponse<String> response = client.send(HttpRequest.newBuilder(config.url().resolve("v1/models"))
                .timeout(Duration.ofSeconds(30)).GET().build(), HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() != 200) {
            throw new IOException("GET /v1/models answered " + response.statusCode() + ": " + response.body());
        }
        JsonNode data = Json.MAPPER.readTree(response.body()).path("data");
        if (data.isEmpty()) throw new IOException("the server lists no models");
        return data.get(0).path("id").asText();
    }

    /** Server tokens per prompt word, measured on one prompt of the benchmark's size. */
    private double calibrate(String model) throws IOException, InterruptedException {
        int words = Math.max(1, config.promptLength());
        HttpResponse<String> response = client.send(post(completionBody(model, randomWords(new Random(~config.seed()), words), 1, false)),
                HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() != 200) {
            throw new IOException("the calibration request failed with " + response.statusCode() + ": " + response.body());
        }
        int tokens = Json.MAPPER.readTree(response.body()).path("usage").path("prompt_tokens").asInt(0);
        if (tokens <= 0) throw new IOException("the server reported no prompt tokens: " + response.body());
        return (double) tokens / words;
    }

    private RequestResult send(int index, String model, String prompt) {
        long sent = System.nanoTime();
        try {
            HttpResponse<Stream<String>> response = client.send(post(completionBody(model, prompt, config.generationLength(), true)),
                    HttpResponse.BodyHandlers.ofLines());
            if (response.statusCode() != 200) {
                String body;
                try (Stream<String> lines = response.body()) {
                    body = String.join("\n", lines.toList());
                }
                return failed(index, "HTTP " + response.statusCode() + ": " + body);
            }
            long first = 0;
            long last = 0;
            List<Double> gaps = new ArrayList<>();
            int promptTokens = 0;
            int outputTokens = 0;
            boolean doneSeen = false;
            try (Stream<String> lines = response.body()) {
                for (Iterator<String> it = lines.iterator(); it.hasNext(); ) {
                    String line = it.next();
                    if (!line.startsWith("data: ")) continue;
                    long now = System.nanoTime();
                    String payload = line.substring(6);
                    if (payload.equals("[DONE]")) {
                        doneSeen = true;
                        break;
                    }
                    JsonNode chunk = Json.MAPPER.readTree(payload);
                    if (chunk.has("error")) return failed(index, chunk.path("error").path("message").asText());
                    JsonNode usage = chunk.path("usage");
                    if (usage.isObject()) {
                        promptTokens = usage.path("prompt_tokens").asInt();
                        outputTokens = usage.path("completion_tokens").asInt();
                    }
                    JsonNode choices = chunk.path("choices");
                    if (choices.isEmpty() || choices.get(0).path("text").asText("").isEmpty()) continue;
                    if (first == 0) first = now; else gaps.add((now - last) / 1e6);
                    last = now;
                }
            }
            long end = System.nanoTime();
            if (!doneSeen) return failed(index, "the stream ended without data: [DONE]");
            if (first == 0) return failed(index, "no tokens were streamed");
            return new RequestResult(index, true, null, promptTokens, outputTokens, (first - sent) / 1e6, (end - sent) / 1e6,
                    gaps.stream().mapToDouble(Double::doubleValue).toArray());
        } catch (IOException e) {
            return failed(index, e.toString());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return failed(index, "interrupted");
        }
    }

    private static RequestResult failed(int index, String error) {
        return new RequestResult(index, false, error, 0, 0, Double.NaN, Double.NaN, new double[0]);
    }

    private HttpRequest post(String body) {
        return HttpRequest.newBuilder(config.url().resolve("v1/completions"))
                .header("Content-Type", "application/json")
                .timeout(Duration.ofMinutes(30))
                .POST(HttpRequest.BodyPublishers.ofString(body)).build();
    }

    private String completionBody(String model, String prompt, int maxTokens, boolean stream) {
        ObjectNode body = Json.MAPPER.createObjectNode();
        body.put("model", model);
        body.put("prompt", prompt);
        body.put("max_tokens", maxTokens);
        body.put("temperature", 0.0);
        body.put("ignore_eos", true);
        if (stream) {
            body.put("stream", true);
            body.putObject("stream_options").put("include_usage", true);
        }
        if (config.kvPolicy() != null) body.put("kv_policy", config.kvPolicy());
        return body.toString();
    }

    private static String randomWords(Random random, int words) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < words; i++) {
            if (i > 0) out.append(' ');
            out.append(WORDS[random.nextInt(WORDS.length)]);
        }
        return out.toString();
    }

    // ------------------------------------------------------------------ reports

    /** The human-readable table, laid out as vLLM's benchmark_serving prints it. */
    public static String report(Summary s) {
        StringBuilder out = new StringBuilder();
        out.append("============ Serving Benchmark Result ============\n");
        row(out, "Model:", s.model());
        row(out, "KV policy:", s.config().kvPolicy() == null ? "(server default)" : s.config().kvPolicy());
        row(out, "Concurrency:", Integer.toString(s.config().concurrency()));
        row(out, "Successful requests:", Integer.toString(s.completed()));
        row(out, "Failed requests:", Integer.toString(s.failed()));
        row(out, "Benchmark duration (s):", fmt(s.durationSeconds()));
        row(out, "Total input tokens:", Long.toString(s.promptTokens()));
        row(out, "Total generated tokens:", Long.toString(s.outputTokens()));
        row(out, "Request throughput (req/s):", fmt(s.requestThroughput()));
        row(out, "Output token throughput (tok/s):", fmt(s.outputThroughput()));
        row(out, "Total token throughput (tok/s):", fmt(s.totalTokenThroughput()));
        if (s.load().peakRunning() >= 0) {
            row(out, "Peak running sequences (server):", Integer.toString(s.load().peakRunning()));
            row(out, "Peak waiting requests (server):", Integer.toString(s.load().peakWaiting()));
            row(out, "Peak KV bytes held (server):", Long.toString(s.load().peakKvBytes()));
            row(out, "Preemptions during the run:", Long.toString(s.load().preemptions()));
        }
        section(out, "Time to First Token", "TTFT", s.ttft());
        section(out, "Time per Output Token (excl. 1st token)", "TPOT", s.tpot());
        section(out, "Inter-token Latency", "ITL", s.itl());
        section(out, "End-to-end Latency", "E2EL", s.e2e());
        out.append("==================================================\n");
        return out.toString();
    }

    private static void section(StringBuilder out, String title, String name, LatencySummary l) {
        int pad = Math.max(0, 50 - title.length() - 2);
        out.append("-".repeat(pad / 2)).append(title).append("-".repeat(pad - pad / 2 + 2)).append('\n');
        row(out, "Mean " + name + " (ms):", fmt(l.mean()));
        row(out, "Median " + name + " (ms):", fmt(l.p50()));
        row(out, "P90 " + name + " (ms):", fmt(l.p90()));
        row(out, "P99 " + name + " (ms):", fmt(l.p99()));
    }

    private static void row(StringBuilder out, String label, String value) {
        out.append(String.format(Locale.ROOT, "%-40s %10s%n", label, value));
    }

    private static String fmt(double v) {
        return Double.isNaN(v) ? "n/a" : String.format(Locale.ROOT, "%.2f", v);
    }

    /** Configuration, totals, latency summaries and every request's measurements. */
    public static ObjectNode json(Summary s) {
        ObjectNode root = Json.MAPPER.createObjectNode();
        ObjectNode cfg = root.putObject("config");
        cfg.put("url", s.config().url().toString());
        cfg.put("model", s.model());
        cfg.put("kv_policy", s.config().kvPolicy());
        cfg.put("concurrency", s.config().concurrency());
        cfg.put("requests", s.config().requests());
        cfg.put("prompt_len", s.config().promptLength());
        cfg.put("gen_len", s.config().generationLength());
        cfg.put("seed", s.config().seed());
        root.put("duration_s", s.durationSeconds());
        root.put("completed", s.completed());
        root.put("failed", s.failed());
        root.put("total_input_tokens", s.promptTokens());
        root.put("total_output_tokens", s.outputTokens());
        root.put("request_throughput", s.requestThroughput());
        root.put("output_throughput", s.outputThroughput());
        root.put("total_token_throughput", s.totalTokenThroughput());
        root.put("peak_running", s.load().peakRunning());
        root.put("peak_waiting", s.load().peakWaiting());
        root.put("peak_kv_bytes", s.load().peakKvBytes());
        root.put("preemptions", s.load().preemptions());
        latency(root, "ttft", s.ttft());
        latency(root, "tpot", s.tpot());
        latency(root, "itl", s.itl());
        latency(root, "e2el", s.e2e());
        ArrayNode requests = root.putArray("requests");
        for (RequestResult r : s.requests()) {
            ObjectNode o = requests.addObject();
            o.put("index", r.index());
            o.put("success", r.success());
            o.put("error", r.error());
            o.put("prompt_tokens", r.promptTokens());
            o.put("output_tokens", r.outputTokens());
            number(o, "ttft_ms", r.ttftMs());
            number(o, "tpot_ms", r.tpotMs());
            number(o, "latency_ms", r.latencyMs());
            ArrayNode itl = o.putArray("itl_ms");
            for (double v : r.interTokenMs()) itl.add(v);
        }
        return root;
    }

    private static void latency(ObjectNode root, String name, LatencySummary l) {
        number(root, "mean_" + name + "_ms", l.mean());
        number(root, "median_" + name + "_ms", l.p50());
        number(root, "p90_" + name + "_ms", l.p90());
        number(root, "p99_" + name + "_ms", l.p99());
    }

    private static void number(ObjectNode o, String name, double v) {
        if (Double.isNaN(v)) o.putNull(name); else o.put(name, v);
    }

    public static final String CSV_HEADER = "model,kv_policy,concurrency,requests,prompt_len,gen_len,completed,failed,duration_s,"
            + "total_input_tokens,total_output_tokens,request_throughput,output_throughput,total_token_throughput,"
            + "mean_ttft_ms,p50_ttft_ms,p90_ttft_ms,p99_ttft_ms,mean_tpot_ms,p50_tpot_ms,p90_tpot_ms,p99_tpot_ms,"
            + "mean_itl_ms,p50_itl_ms,p90_itl_ms,p99_itl_ms,mean_e2el_ms,p50_e2el_ms,p90_e2el_ms,p99_e2el_ms,"
            + "peak_running,peak_waiting,peak_kv_bytes,preemptions";

    /** One summary row matching {@link #CSV_HEADER}; runs with different settings append rows to one file. */
    public static String csvRow(Summary s) {
        List<String> cells = new ArrayList<>();
        cells.add(csv(s.model()));
        cells.add(csv(s.config().kvPolicy() == null ? "" : s.config().kvPolicy()));
        cells.add(Integer.toString(s.config().concurrency()));
        cells.add(Integer.toString(s.config().requests()));
        cells.add(Integer.toString(s.config().promptLength()));
        cells.add(Integer.toString(s.config().generationLength()));
        cells.add(Integer.toString(s.completed()));
        cells.add(Integer.toString(s.failed()));
        cells.add(num(s.durationSeconds()));
        cells.add(Long.toString(s.promptTokens()));
        cells.add(Long.toString(s.outputTokens()));
        cells.add(num(s.requestThroughput()));
        cells.add(num(s.outputThroughput()));
        cells.add(num(s.totalTokenThroughput()));
        for (LatencySummary l : List.of(s.ttft(), s.tpot(), s.itl(), s.e2e())) {
            cells.add(num(l.mean()));
            cells.add(num(l.p50()));
            cells.add(num(l.p90()));
            cells.add(num(l.p99()));
        }
        cells.add(Integer.toString(s.load().peakRunning()));
        cells.add(Integer.toString(s.load().peakWaiting()));
        cells.add(Long.toString(s.load().peakKvBytes()));
        cells.add(Long.toString(s.load().preemptions()));
        return String.join(",", cells);
    }

    private static String num(double v) {
        return Double.isNaN(v) ? "" : String.format(Locale.ROOT, "%.4f", v);
    }

    private static String csv(String s) {
        return s.contains(",") || s.contains("\"") ? "\"" + s.replace("\"", "\"\"") + "\"" : s;
    }
}
