package dev.kvserve.tests;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvserve.http.EngineBackend;
import dev.kvserve.http.HttpServer;
import dev.kvserve.http.ModelCard;
import dev.kvserve.http.ServerOptions;
import dev.kvserve.http.ServingBackend;
import dev.kvserve.http.cli.KvServeCli;
import dev.kvserve.scheduler.Engine;
import dev.kvserve.scheduler.EngineStats;
import dev.kvserve.scheduler.FinishReason;
import dev.kvserve.scheduler.GenerationListener;
import dev.kvserve.scheduler.GenerationRequest;
import dev.kvserve.scheduler.GenerationResult;
import dev.kvserve.scheduler.TokenEvent;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The real server on the shipped model, driven over HTTP the way many clients at once drive it: a
 * small KV budget makes requests wait and get preempted, some clients hang up mid-stream, and yet
 * every finished stream is well-formed and says exactly what the same request says alone, and the
 * pool ends empty by its own counters.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class ServerEndToEndTest {

    static final ObjectMapper JSON = new ObjectMapper();
    static final int STREAMS = 32;
    static final int ABORT_EVERY = 4;

    static Engine engine;
    static CountingBackend backend;
    static HttpServer server;
    static HttpClient client;
    static Path model;

    /** The engine's backend, counting the generations that ended cancelled (the hung-up clients). */
    static final class CountingBackend implements ServingBackend {
        final EngineBackend inner;
        volatile CountDownLatch cancelled = new CountDownLatch(0);

        CountingBackend(EngineBackend inner) {
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
                @Override public void onComplete(GenerationResult result) {
                    listener.onComplete(result);
                    if (result.finishReason() == FinishReason.CANCELLED) cancelled.countDown();
                }
            });
        }
    }

    @BeforeAll
    static void start() throws Exception {
        model = SharedFiles.model("stories260K.gguf");
        // 384 KiB of fp16 KV is about 600 tokens of this model: far less than 32 streams need at
        // once, so the scheduler queues, admits as blocks free up and preempts when they run out.
        engine = Engine.builder().model(model).backend("cpu").threads(2)
                .maxBatch(16).maxTokensPerStep(128).kvBudget(384L << 10).build();
        backend = new CountingBackend(EngineBackend.forFile(engine, model));
        server = HttpServer.start(backend, ServerOptions.defaults().withPort(0));
        client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    }

    @AfterAll
    static void stop() {
        if (server != null) server.close();
        if (backend != null) backend.close();
        if (client != null) client.shutdownNow();
    }

    static String prompt(int i) {
        String[] who = {"a little girl", "a big dog", "a small bird", "an old man", "a happy cat", "a tiny fish", "a brave boy", "a red ball"};
        String[] what = {"wanted to play", "saw a tree", "was very sad", "found a box"};
        return "Once upon a time, there was " + who[i % who.length] + " who " + what[(i / who.length) % what.length] + ".";
    }

    static String body(int i, boolean stream, int maxTokens) {
        return """
                {"model": "stories260K", "prompt": %s, "max_tokens": %d, "temperature": 0, "stream": %s}"""
                .formatted(JSON.valueToTree(prompt(i)).toString(), maxTokens, stream);
    }

    static HttpResponse<String> post(String json) throws Exception {
        return client.send(HttpRequest.newBuilder(URI.create(server.url() + "/v1/completions"))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(json)).build(), HttpResponse.BodyHandlers.ofString());
    }

    /** The text of a server-sent-event completion stream, after checking every frame is as OpenAI sends it. */
    static String streamedText(String sse) throws Exception {
        assertThat(sse).endsWith("data: [DONE]\n\n");
        String[] events = sse.split("\n\n");
        StringBuilder text = new StringBuilder();
        String finish = null;
        for (int e = 0; e < events.length - 1; e++) {
            assertThat(events[e]).startsWith("data: ");
            JsonNode chunk = JSON.readTree(events[e].substring("data: ".length()));
            assertThat(chunk.get("object").asText()).isEqualTo("text_completion");
            assertThat(chunk.get("id").asText()).startsWith("cmpl-");
            text.append(chunk.at("/choices/0/text").asText());
            if (!chunk.at("/choices/0/finish_reason").isNull() && !chunk.at("/choices/0/finish_reason").isMissingNode()) {
                assertThat(finish).as("one finish_reason per stream").isNull();
                finish = chunk.at("/choices/0/finish_reason").asText();
            }
        }
        assertThat(finish).isIn("stop", "length");
        return text.toString();
    }

    /** A client that reads the first frames of a long stream and then hangs up. */
    static void abortAfterFrames(int i, int frames) throws Exception {
        String json = """
                {"prompt": %s, "max_tokens": 1500, "ignore_eos": true, "temperature": 0, "stream": true}"""
                .formatted(JSON.valueToTree(prompt(i)).toString());
        try (Socket socket = new Socket("127.0.0.1", server.port())) {
            socket.setSoTimeout(120_000);
            OutputStream out = socket.getOutputStream();
            out.write(("POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: "
                    + json.getBytes(StandardCharsets.UTF_8).length + "\r\n\r\n" + json).getBytes(StandardCharsets.UTF_8));
            out.flush();
            InputStream in = socket.getInputStream();
            ByteArrayOutputStream seen = new ByteArrayOutputStream();
            byte[] buf = new byte[4096];
            while (seen.toString(StandardCharsets.UTF_8).split("data: \\{", -1).length <= frames) {
                int n = in.read(buf);
                assertThat(n).as("the stream ended before %d frames", frames).isPositive();
                seen.write(buf, 0, n);
            }
            assertThat(seen.toString(StandardCharsets.UTF_8)).startsWith("HTTP/1.1 200 OK");
        }
    }

    @Test
    void thirtyTwoConcurrentStreamsSomeAbortedAreEachWhatTheyAreAlone() throws Exception {
        int maxTokens = 40;
        List<String> alone = new ArrayList<>();
        for (int i = 0; i < STREAMS; i++) {
            HttpResponse<String> r = post(body(i, false, maxTokens));
            assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
            alone.add(JSON.readTree(r.body()).at("/choices/0/text").asText());
        }

        backend.cancelled = new CountDownLatch(STREAMS / ABORT_EVERY);
        ExecutorService clients = Executors.newFixedThreadPool(STREAMS);
        try {
            List<Future<String>> streams = new ArrayList<>();
            for (int i = 0; i < STREAMS; i++) {
                int id = i;
                streams.add(clients.submit(() -> {
                    if (id % ABORT_EVERY == ABORT_EVERY - 1) {
                        abortAfterFrames(id, 3);
                        return null;
                    }
                    HttpResponse<String> r = post(body(id, true, maxTokens));
                    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
                    assertThat(r.headers().firstValue("content-type")).hasValueSatisfying(v -> assertThat(v).startsWith("text/event-stream"));
                    return streamedText(r.body());
                }));
            }
            for (int i = 0; i < STREAMS; i++) {
                String text = streams.get(i).get(240, TimeUnit.SECONDS);
                if (i % ABORT_EVERY != ABORT_EVERY - 1) {
                    assertThat(text).as("stream %d under concurrency vs alone", i).isEqualTo(alone.get(i));
                }
            }
        } finally {
            clients.shutdownNow();
        }

        assertThat(backend.cancelled.await(120, TimeUnit.SECONDS)).as("every hang-up cancelled its generation").isTrue();
        // One more request through the engine loop: by its end every cancelled sequence has been reaped.
        assertThat(post(body(0, false, 2)).statusCode()).isEqualTo(200);
        EngineStats stats = engine.stats();
        assertThat(stats.running()).isZero();
        assertThat(stats.waiting()).isZero();
        assertThat(stats.kvBlocksUsed()).as("blocks leaked").isZero();
        assertThat(stats.kvBytesUsed()).isZero();
        assertThat(server.disconnectCancels()).isGreaterThanOrEqualTo(STREAMS / ABORT_EVERY);
    }

    @Test
    void serverCliAndEmbeddedApiAgreeOnGreedyText() throws Exception {
        String prompt = "Lily and Ben went to the park";
        HttpResponse<String> r = client.send(HttpRequest.newBuilder(URI.create(server.url() + "/v1/completions"))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString("""
                        {"prompt": "%s", "max_tokens": 30, "temperature": 0}""".formatted(prompt))).build(),
                HttpResponse.BodyHandlers.ofString());
        assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
        String served = JSON.readTree(r.body()).at("/choices/0/text").asText();

        String embedded = engine.generate(GenerationRequest.builder(prompt).greedy().maxTokens(30).build()).text();

        PrintStream stdout = System.out;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        int exit;
        try {
            System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
            exit = KvServeCli.commandLine().execute("generate", "-m", model.toString(), "-p", prompt, "-n", "30", "--greedy", "-t", "1");
        } finally {
            System.setOut(stdout);
        }
        assertThat(exit).isZero();
        String cli = captured.toString(StandardCharsets.UTF_8);

        assertThat(served).isNotEmpty().isEqualTo(embedded);
        assertThat(cli).isEqualTo(prompt + served + System.lineSeparator());
    }
}
