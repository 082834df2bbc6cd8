package dev.kvserve.http;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kvserve.http.openai.Json;
import dev.kvserve.scheduler.Engine;
import dev.kvserve.scheduler.EngineStats;
import dev.kvserve.scheduler.FinishReason;
import dev.kvserve.scheduler.GenerationListener;
import dev.kvserve.scheduler.GenerationRequest;
import dev.kvserve.scheduler.GenerationResult;
import dev.kvserve.scheduler.TokenEvent;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** The server over the real engine and the real stories260K model, driven over HTTP. */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class EngineServerTest {

    static Engine engine;
    static ObservedBackend backend;
    static HttpServer server;
    static HttpClient client;

    static Path shared(String first, String... more) {
        Path repo = Path.of(System.getProperty("kvserve.root", ".")).toAbsolutePath().normalize();
        for (Path p = repo; p != null; p = p.getParent()) {
            if (Files.isDirectory(p.resolveSibling("shared").resolve("models"))) return p.resolveSibling("shared").resolve(first, more);
        }
        throw new IllegalStateException("../shared (models and data) not found next to " + repo);
    }

    /** The engine, with a way to see its generations end (cancellations in particular). */
    static final class ObservedBackend implements ServingBackend {
        final EngineBackend inner;
        volatile CountDownLatch cancelled = new CountDownLatch(1);
        final List<GenerationResult> cancelledResults = new java.util.concurrent.CopyOnWriteArrayList<>();

        ObservedBackend(EngineBackend inner) {
            this.inner = inner;
        }

        @Override public ModelCard model() { return inner.model(); }
        @Override public int[] tokenize(String text, boolean addBos) { return inner.tokenize(text, addBos); }
        @Override public byte[] tokenBytes(int token) { return inner.tokenBytes(token); }
        @Override public String resolveKvPolicy(String spec) { return inner.resolveKvPolicy(spec); }
        @Override public EngineStats stats() { return inner.stats(); }
        @Override public void close() { inner.close(); }

        @Override
        public Cancellable submit(GenerationRequest request, GenerationListener listener) {
            return inner.submit(request, new GenerationListener() {
                @Override public void onToken(TokenEvent event) { listener.onToken(event); }
                @Override public void onError(Throwable error) { listener.onError(error); }

                @Override
                public void onComplete(GenerationResult result) {
                    listener.onComplete(result);
                    if (result.finishReason() == FinishReason.CANCELLED) {
                        cancelledResults.add(result);
                        cancelled.countDown();
                    }
                }
            });
        }
    }

    @BeforeAll
    static void start() throws Exception {
        engine = Engine.builder().model(shared("models", "stories260K.gguf")).backend("cpu").threads(2)
                .maxBatch(4).maxTokensPerStep(64).kvBudget(4L << 20).build();
        backend = new ObservedBackend(EngineBackend.forFile(engine, shared("models", "stories260K.gguf")));
        server = HttpServer.start(backend, ServerOptions.defaults().withPort(0));
        client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    }

    @AfterAll
    static void stop() {
        if (server != null) server.close();
        if (backend != null) backend.close();
        if (client != null) client.shutdownNow();
    }

    static HttpResponse<String> post(String path, String json) throws Exception {
        return client.send(HttpRequest.newBuilder(URI.create(server.url() + path))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(json)).build(), HttpResponse.BodyHandlers.ofString());
    }

    static JsonNode json(HttpResponse<String> response) throws Exception {
        assertThat(response.statusCode()).as(response.body()).isEqualTo(200);
        return Json.MAPPER.readTree(response.body());
    }

    @Test
    void modelIsNamedAfterItsFile() throws Exception {
        JsonNode models = Json.MAPPER.readTree(client.send(HttpRequest.newBuilder(URI.create(server.url() + "/v1/models")).build(),
                HttpResponse.BodyHandlers.ofString()).body());
        assertThat(models.at("/data/0/id").asText()).isEqualTo("stories260K");
        assertThat(models.at("/data/0/max_model_len").asInt()).isEqualTo(engine.contextLength());
    }

    @Test
    void greedyCompletionIsWhatTheEngineGenerates() throws Exception {
        JsonNode body = json(post("/v1/completions", """
                {"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 24, "temperature": 0}"""));
        GenerationResult direct = engine.generate(GenerationRequest.builder("Once upon a time").greedy().maxTokens(24).build());
        String text = body.at("/choices/0/text").asText();
        assertThat(text).isEqualTo(direct.text());
        // llama.cpp's greedy continuation of this prompt (shared/models/README.md).
        assertThat(text).startsWith(", there was a little girl named Lily.");
        assertThat(body.at("/usage/prompt_tokens").asInt()).isEqualTo(5);
        assertThat(body.at("/usage/completion_tokens").asInt()).isEqualTo(direct.completionTokens());
        assertThat(body.at("/choices/0/finish_reason").asText()).isEqualTo(direct.finishReason().wireName());
    }

    @Test
    void streamedTextEqualsTheWholeResponse() throws Exception {
        String request = """
                {"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0, "stream": true,
                 "stream_options": {"include_usage": true}}""";
        HttpResponse<String> response = post("/v1/completions", request);
        assertThat(response.statusCode()).isEqualTo(200);
        List<JsonNode> events = Sse.events(response.body());
        StringBuilder text = new StringBuilder();
        String finish = null;
        for (JsonNode e : events.subList(0, events.size() - 1)) {
            assertThat(e.get("usage").isNull()).isTrue();
            text.append(e.at("/choices/0/text").asText());
            if (!e.at("/choices/0/finish_reason").isNull()) finish = e.at("/choices/0/finish_reason").asText();
        }
        JsonNode whole = json(post("/v1/completions", request.replace("\"stream\": true,", "").replace(
                "\"stream_options\": {\"include_usage\": true}", "\"echo\": false")));
        assertThat(text.toString()).isEqualTo(whole.at("/choices/0/text").asText());
        assertThat(finish).isEqualTo(whole.at("/choices/0/finish_reason").asText());
        JsonNode usage = events.getLast();
        assertThat(usage.get("choices")).isEmpty();
        assertThat(usage.get("usage")).isEqualTo(whole.get("usage"));
    }

    @Test
    void chatUsesTheFallbackTranscriptWithSpecialTokensParsed() throws Exception {
        assertThat(backend.model().chatTemplate()).as("stories260K ships no chat template").isNull();
        JsonNode body = json(post("/v1/chat/completions", """
                {"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 16, "temperature": 0}"""));
        String transcript = "user: Tell me a story.\nassistant:";
        assertThat(body.at("/usage/prompt_tokens").asInt()).isEqualTo(engine.tokenizer().encode(transcript, true, true).length);
        GenerationResult direct = engine.generate(GenerationRequest.builder(engine.tokenizer().encode(transcript, true, true))
                .greedy().maxTokens(16).build());
        assertThat(body.at("/choices/0/message/content").asText()).isEqualTo(direct.text());
        assertThat(body.at("/choices/0/message/role").asText()).isEqualTo("assistant");
    }

    @Test
    void logprobsAreTheModelsAndSorted() throws Exception {
        JsonNode chat = json(post("/v1/chat/completions", """
                {"messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 6, "temperature": 0,
                 "logprobs": true, "top_logprobs": 3}"""));
        JsonNode content = chat.at("/choices/0/logprobs/content");
        assertThat(content).hasSize(6);
        for (JsonNode entry : content) {
            double chosen = entry.get("logprob").asDouble();
            assertThat(chosen).isLessThanOrEqualTo(0.0);
            JsonNode top = entry.get("top_logprobs");
            assertThat(top).hasSize(3);
            // Greedy: the chosen token is the most likely one.
            assertThat(top.get(0).get("logprob").asDouble()).isEqualTo(chosen);
            assertThat(top.get(0).get("token").asText()).isEqualTo(entry.get("token").asText());
            assertThat(top.get(0).get("logprob").asDouble()).isGreaterThanOrEqualTo(top.get(1).get("logprob").asDouble());
            assertThat(top.get(1).get("logprob").asDouble()).isGreaterThanOrEqualTo(top.get(2).get("logprob").asDouble());
            byte[] bytes = new byte[entry.get("bytes").size()];
            for (int i = 0; i < bytes.length; i++) bytes[i] = (byte) entry.get("bytes").get(i).asInt();
            assertThat(new String(bytes, StandardCharsets.UTF_8)).isEqualTo(entry.get("token").asText());
        }
        JsonNode text = json(post("/v1/completions", """
                {"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0, "logprobs": 2}"""));
        JsonNode lp = text.at("/choices/0/logprobs");
        assertThat(lp.get("tokens")).hasSize(4);
        StringBuilder joined = new StringBuilder();
        for (JsonNode t : lp.get("tokens")) joined.append(t.asText());
        assertThat(joined.toString()).isEqualTo(text.at("/choices/0/text").asText());
        assertThat(lp.at("/text_offset/1").asInt()).isEqualTo(lp.at("/tokens/0").asText().length());
    }

    @Test
    void stopStringsCutTheText() throws Exception {
        JsonNode body = json(post("/v1/completions", """
                {"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0, "stop": ["Lily"]}"""));
        assertThat(body.at("/choices/0/text").asText()).isEqualTo(", there was a little girl named ");
        assertThat(body.at("/choices/0/finish_reason").asText()).isEqualTo("stop");
    }

    @Test
    void requestsPickTheirOwnKvPolicy() throws Exception {
        JsonNode compressed = json(post("/v1/completions", """
                {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0, "kv_policy": "int8:group=8"}"""));
        assertThat(compressed.at("/choices/0/text").asText()).isNotEmpty();
        HttpResponse<String> bad = post("/v1/completions", """
                {"prompt": "Once upon a time", "kv_policy": "zip9"}""");
        assertThat(bad.statusCode()).isEqualTo(400);
        JsonNode error = Json.MAPPER.readTree(bad.body()).get("error");
        assertThat(error.get("param").asText()).isEqualTo("kv_policy");
        assertThat(error.get("message").asText()).startsWith("invalid kv_policy 'zip9': unknown KV policy method 'zip9'; valid: ");
    }

    @Test
    void seededSamplingIsReproducibleAcrossChoices() throws Exception {
        String request = """
                {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0.9, "seed": 1234, "n": 2}""";
        JsonNode first = json(post("/v1/completions", request));
        JsonNode second = json(post("/v1/completions", request));
        assertThat(first.get("choices")).hasSize(2);
        for (int i = 0; i < 2; i++) {
            assertThat(second.at("/choices/" + i + "/text").asText()).isEqualTo(first.at("/choices/" + i + "/text").asText());
        }
        GenerationResult direct = engine.generate(GenerationRequest.builder("Once upon a time").temperature(0.9f)
                .seed(1235).maxTokens(12).build());
        assertThat(first.at("/choices/1/text").asText()).isEqualTo(direct.text());
    }

    @Test
    void disconnectMidStreamCancelsAndFreesItsBlocks() throws Exception {
        backend.cancelled = new CountDownLatch(1);
        int before = backend.cancelledResults.size();
        try (Socket socket = new Socket("127.0.0.1", server.port())) {
            socket.setSoTimeout(60_000);
            OutputStream out = socket.getOutputStream();
            out.write(HttpStreamingTest.streamRequest("/v1/completions", """
                    {"prompt": "Once upon a time", "max_tokens": 1900, "temperature": 0, "ignore_eos": true, "stream": true}""")
                    .getBytes(StandardCharsets.UTF_8));
            out.flush();
            InputStream in = socket.getInputStream();
            // Tokens are arriving: the sequence holds KV blocks now.
            HttpStreamingTest.readFrames(in, 3);
        }
        assertThat(backend.cancelled.await(60, TimeUnit.SECONDS)).as("the disconnect cancelled the generation").isTrue();
        GenerationResult cancelled = backend.cancelledResults.get(before);
        assertThat(cancelled.completionTokens()).isBetween(3, 1899);
        // One more request through the engine: by its end the cancelled sequence's blocks are back.
        json(post("/v1/completions", """
                {"prompt": "Once", "max_tokens": 2}"""));
        EngineStats stats = engine.stats();
        assertThat(stats.running()).isZero();
        assertThat(stats.kvBlocksUsed()).isZero();
        assertThat(stats.kvBytesUsed()).isZero();
        assertThat(server.disconnectCancels()).isGreaterThanOrEqualTo(1);
    }

    @Test
    void metricsReportTheEngine() throws Exception {
        json(post("/v1/completions", """
                {"prompt": "Once upon a time", "max_tokens": 5}"""));
        String metrics = client.send(HttpRequest.newBuilder(URI.create(server.url() + "/metrics")).build(),
                HttpResponse.BodyHandlers.ofString()).body();
        long ttftCount = value(metrics, "kvserve_time_to_first_token_seconds_count");
        long prompt = value(metrics, "kvserve_prompt_tokens_total");
        long generated = value(metrics, "kvserve_generation_tokens_total");
        assertThat(ttftCount).isPositive();
        assertThat(prompt).isGreaterThanOrEqualTo(5);
        assertThat(generated).isGreaterThanOrEqualTo(5);
        assertThat(metrics).contains("kvserve_kv_bytes_capacity " + (4L << 20));
        assertThat(metrics).containsPattern("kvserve_inter_token_latency_seconds_count [1-9]");
    }

    @Test
    void fullQueueAnswers503() throws Exception {
        Engine small = Engine.builder().model(shared("models", "stories260K.gguf")).backend("cpu").threads(1)
                .maxBatch(1).maxWaiting(1).kvBudget(4L << 20).build();
        try (EngineBackend smallBackend = EngineBackend.forFile(small, shared("models", "stories260K.gguf"));
             HttpServer smallServer = HttpServer.start(smallBackend, ServerOptions.defaults().withPort(0))) {
            String longStream = """
                    {"prompt": "Once upon a time", "max_tokens": 1900, "ignore_eos": true, "stream": true}""";
            List<Socket> sockets = new ArrayList<>();
            try {
                // The first runs (its tokens arrive), the second waits (its headers arrive once it is queued)...
                for (int frames : new int[] {2, 0}) {
                    Socket s = new Socket("127.0.0.1", smallServer.port());
                    s.setSoTimeout(60_000);
                    sockets.add(s);
                    s.getOutputStream().write(HttpStreamingTest.streamRequest("/v1/completions", longStream)
                            .getBytes(StandardCharsets.UTF_8));
                    HttpStreamingTest.readUntil(s.getInputStream(), "HTTP/1.1 200 OK");
                    HttpStreamingTest.readFrames(s.getInputStream(), frames);
                }
                // ...so the third finds the queue full.
                HttpResponse<String> third = client.send(HttpRequest.newBuilder(URI.create(smallServer.url() + "/v1/completions"))
                        .header("Content-Type", "application/json")
                        .POST(HttpRequest.BodyPublishers.ofString("{\"prompt\": \"x\"}")).build(), HttpResponse.BodyHandlers.ofString());
                assertThat(third.statusCode()).isEqualTo(503);
                assertThat(Json.MAPPER.readTree(third.body()).at("/error/message").asText())
                        .isEqualTo("the waiting queue is full (1 requests waiting); retry later");
            } finally {
                for (Socket s : sockets) s.close();
            }
        }
    }

    @Test
    void benchmarkRunsAgainstTheServer() throws Exception {
        Path out = Files.createTempFile("serve-bench", ".json");
        try (ServeBench bench = new ServeBench(new ServeBench.Config(URI.create(server.url()), null, 2, 4, 16, 8, "int8:group=8", 7))) {
            List<Integer> progress = new java.util.concurrent.CopyOnWriteArrayList<>();
            ServeBench.Summary s = bench.run(progress::add);
            assertThat(s.model()).isEqualTo("stories260K");
            assertThat(s.completed()).isEqualTo(4);
            assertThat(s.failed()).isZero();
            assertThat(s.outputTokens()).isEqualTo(32);
            assertThat(s.promptTokens()).isBetween(4L * 8, 4L * 32);
            assertThat(s.ttft().count()).isEqualTo(4);
            assertThat(s.ttft().p50()).isPositive();
            assertThat(s.e2e().p99()).isGreaterThanOrEqualTo(s.ttft().p99());
            assertThat(s.itl().count()).isPositive();
            assertThat(progress).containsExactlyInAnyOrder(1, 2, 3, 4);
            // The server's own gauges, sampled during the run: never more sequences than requests in flight.
            assertThat(s.load().peakRunning()).isBetween(0, 2);
            assertThat(s.load().preemptions()).isZero();
            assertThat(s.load().peakKvBytes()).isBetween(0L, 4L << 20);
            String report = ServeBench.report(s);
            assertThat(report).contains("Successful requests:", "Median TTFT (ms):", "P99 ITL (ms):", "Output token throughput (tok/s):");
            Files.write(out, Json.MAPPER.writeValueAsBytes(ServeBench.json(s)));
            JsonNode json = Json.MAPPER.readTree(out.toFile());
            assertThat(json.get("completed").asInt()).isEqualTo(4);
            assertThat(json.get("requests")).hasSize(4);
            assertThat(json.get("peak_running").asInt()).isEqualTo(s.load().peakRunning());
            assertThat(json.at("/config/kv_policy").asText()).isEqualTo("int8:group=8");
            assertThat(ServeBench.csvRow(s).split(",", -1)).hasSize(ServeBench.CSV_HEADER.split(",").length);
        } finally {
            Files.deleteIfExists(out);
        }
    }

    private static long value(String metrics, String name) {
        for (String line : metrics.split("\n")) {
            if (line.startsWith(name + " ")) return (long) Double.parseDouble(line.substring(name.length() + 1));
        }
        throw new AssertionError(name + " missing from /metrics");
    }
}
