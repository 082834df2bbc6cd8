package dev.kvserve.tests;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvserve.http.EngineBackend;
import dev.kvserve.http.HttpServer;
import dev.kvserve.http.KvPolicyGate;
import dev.kvserve.http.ServerOptions;
import dev.kvserve.scheduler.Engine;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.management.ManagementFactory;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The real server on the shipped model, attacked the way a hostile client would: KV policies naming
 * server files, directories and sizes, layers the model lacks, compositions that cannot run, huge
 * inputs; malformed, smuggling and slow HTTP; pipelining floods; missing API keys. Each gets its
 * precise status, and afterwards the server still gives the same greedy answer as before, and its
 * threads, descriptors, files on disk, KV blocks and heap are back where they were.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class HostileClientTest {

    static final ObjectMapper JSON = new ObjectMapper();
    static final String KEY = "sk-test-1234567890";
    static final String GREEDY = "{\"prompt\": \"Once upon a time\", \"max_tokens\": 24, \"temperature\": 0}";

    @TempDir
    static Path dir;
    static Path ssd, cwd;
    static Engine engine;
    static EngineBackend backend;
    static HttpServer server;
    static String greedyBefore;
    static Baseline baseline;

    record Baseline(int threads, long fds, long heap, TreeSet<String> files) {
        static Baseline now() throws IOException {
            System.gc();
            long fds;
            try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
                fds = s.count();
            }
            TreeSet<String> files = new TreeSet<>();
            for (Path root : List.of(dir, cwd)) {
                try (Stream<Path> s = Files.walk(root, 2)) {
                    s.forEach(p -> files.add(p.toString()));
                }
            }
            return new Baseline(ManagementFactory.getThreadMXBean().getThreadCount(), fds,
                    ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed(), files);
        }
    }

    @BeforeAll
    static void start() throws Exception {
        cwd = Path.of("").toAbsolutePath();
        ssd = Files.createDirectories(dir.resolve("ssd"));
        Path model = SharedFiles.model("stories260K.gguf");
        Map<String, String> profiles = new LinkedHashMap<>();
        profiles.put("evict", "int4:group=8+h2o:budget=0.5");
        profiles.put("spill", "fp16+offload:host=64KiB,ssd=" + ssd);
        KvPolicyGate gate = new KvPolicyGate(profiles, null, Map.of("host", "256KiB", "ssd", ssd.toString()));
        engine = Engine.builder().model(model).backend("cpu").threads(2).maxBatch(16).maxTokensPerStep(64)
                .kvBudget(512L << 10).build();
        backend = EngineBackend.forFile(engine, model, gate);
        server = HttpServer.start(backend, ServerOptions.defaults().withPort(0)
                .withTimeouts(Duration.ofSeconds(2), Duration.ofSeconds(2))
                .withMaxConnections(64)
                .withApiKeys(List.of(KEY), false));
        Reply first = exchange(post("/v1/completions", GREEDY, true));
        assertThat(first.status).as(first.body).isEqualTo(200);
        greedyBefore = JSON.readTree(first.body).at("/choices/0/text").asText();
        // Warm both profiles (their tier store and bindings are the server's, made once).
        for (String p : profiles.keySet()) assertThat(completion("\"" + p + "\"").status).isEqualTo(200);
        assertThat(completion("\"fp16+offload\"").status).isEqualTo(200);   // the shared store, as serve makes it at start-up
        baseline = Baseline.now();
    }

    @AfterAll
    static void stop() {
        if (server != null) server.close();
        if (backend != null) backend.close();
    }

    // ---------------------------------------------------------------- KV policies

    @Test
    @Order(1)
    void noPolicyMayNameOrSizeAServerResource() throws Exception {
        for (String spec : List.of("int8+offload:ssd=/proc/x", "fp16+offload:ssd=relative/dir", "kvquant:calib=/etc/passwd",
                "kvquant:calib=/nonexistent/file", "cq:calib=/dev/zero", "aqua:calib=" + dir.resolve("fifo"),
                "int4+offload:host=64GiB", "fp16+offload:io_threads=64", "fp16+offload:csd_memory=8GiB")) {
            Reply r = completion(JSON.valueToTree(spec).toString());
            assertThat(r.status).as(spec + " -> " + r.body).isEqualTo(400);
            JsonNode error = JSON.readTree(r.body).get("error");
            assertThat(error.get("param").asText()).isEqualTo("kv_policy");
            String message = error.get("message").asText();
            assertThat(message).contains("only the server's operator sets");
            // Beyond the echo of the client's own spec, nothing says whether a path exists.
            assertThat(message.replace(spec, "SPEC")).doesNotContain("/proc", "/etc", "/dev", "/nonexistent", dir.toString(),
                    cwd.toString(), "relative");
        }
        assertThat(completion("\"kvquant:calib=/etc/passwd\"").body.replace("/etc/passwd", "X"))
                .isEqualTo(completion("\"kvquant:calib=/nonexistent/x\"").body.replace("/nonexistent/x", "X"));
        assertThat(Files.exists(Path.of("/proc/x"))).isFalse();
        assertThat(Files.exists(cwd.resolve("relative"))).isFalse();
    }

    @Test
    @Order(2)
    void policiesThatCannotRunAreRefusedBeforeAdmission() throws Exception {
        for (String spec : List.of("l2:skip=99", "int8+l2:skip=-99", "fp16+quest:skip=7", "d2o:skip=5",
                "int4+clusterkv:skip=0;1;12", "int4:group=3", "fp16+sink:window=16+offload:csd=true",
                "fp16+h2o+offload:csd=true,prefetch=false", "zip9", "int4+int8", "sink+int4", "int4:group=", "+", "")) {
            Reply r = completion(JSON.valueToTree(spec).toString());
            assertThat(r.status).as(spec + " -> " + r.body).isEqualTo(400);
        }
        // A huge spec is refused with a short message.
        Reply huge = completion(JSON.valueToTree("int4:group=8+" + "x".repeat(100_000)).toString());
        assertThat(huge.status).isEqualTo(400);
        assertThat(huge.body.length()).isLessThan(4096);
    }

    @Test
    @Order(3)
    void distinctOffloadSpecsShareTheOperatorsOneStore() throws Exception {
        int threads = ManagementFactory.getThreadMXBean().getThreadCount();
        for (int i = 0; i < 20; i++) {
            assertThat(completion("\"int4+offload:host=" + (i + 1) + "KiB\"").status).isEqualTo(400);
            Reply ok = completion(i % 2 == 0 ? "\"int4+offload:prefetch=false\"" : "\"int" + (i % 4 == 1 ? 8 : 4) + ":group=" + (4 << (i % 2)) + "+offload\"");
            assertThat(ok.status).as(ok.body).isEqualTo(200);
        }
        assertThat(ManagementFactory.getThreadMXBean().getThreadCount()).isLessThanOrEqualTo(threads + 2);
    }

    @Test
    @Order(4)
    void unauthenticatedRequestsGet401AndProbesStayOpen() throws Exception {
        assertThat(exchange(post("/v1/completions", GREEDY, false)).status).isEqualTo(401);
        String wrong = post("/v1/completions", GREEDY, false).replace("\r\n\r\n", "\r\nAuthorization: Bearer sk-wrong\r\n\r\n");
        Reply r = exchange(wrong);
        assertThat(r.status).isEqualTo(401);
        assertThat(JSON.readTree(r.body).at("/error/code").asText()).isEqualTo("invalid_api_key");
        assertThat(exchange("GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n").status).isEqualTo(401);
        assertThat(exchange("GET /health HTTP/1.1\r\nHost: x\r\n\r\n").status).isEqualTo(200);
        assertThat(exchange("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").status).isEqualTo(200);
    }

    // ---------------------------------------------------------------- malformed requests (already handled)

    @Test
    @Order(5)
    void malformedBodiesGetTheirStatus() throws Exception {
        assertThat(exchange(post("/v1/completions", "{not json", true)).status).isEqualTo(400);
        assertThat(exchange(post("/v1/completions", "{\"prompt\": 7}", true)).status).isEqualTo(400);
        assertThat(exchange(post("/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": -1}", true)).status).isEqualTo(400);
        assertThat(exchange(post("/v1/completions", GREEDY, true).replace("application/json", "text/plain")).status).isEqualTo(415);
        assertThat(exchange(auth("DELETE /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n")).status).isEqualTo(405);
        assertThat(exchange(auth("GET /v2/anything HTTP/1.1\r\nHost: x\r\n\r\n")).status).isEqualTo(404);
        String big = "{\"prompt\": \"" + "a".repeat(9 << 20) + "\"}";
        assertThat(exchange(post("/v1/completions", big, true)).status).isEqualTo(413);
    }

    // ---------------------------------------------------------------- transport

    @Test
    @Order(6)
    void smugglingShapesAreRefusedAndTheConnectionClosed() throws Exception {
        String body = GREEDY;
        String head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY + "\r\nContent-Type: application/json\r\n";
        List<String> attacks = List.of(
                head + "Content-Length: -5\r\n\r\n" + body,
                head + "Content-Length: abc\r\n\r\n" + body,
                head + "Content-Length: " + body.length() + "\r\nContent-Length: 3\r\n\r\n" + body,
                head + "Content-Length: " + body.length() + "\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
                head + "Transfer-Encoding: gzip\r\n\r\n" + body,
                head + "Transfer-Encoding: chunked, identity\r\n\r\n" + body);
        for (String attack : attacks) {
            Reply r = exchangeExpectingClose(attack);
            assertThat(r.status).as(attack.lines().skip(4).findFirst().orElse("")).isEqualTo(400);
            assertThat(r.closed).as("connection closed after a smuggling-shaped request").isTrue();
        }
    }

    @Test
    @Order(7)
    void oversizedHeadersGet431() throws Exception {
        assertThat(exchangeExpectingClose("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + "a".repeat(100_000) + "\r\n\r\n").status)
                .isEqualTo(431);
        StringBuilder many = new StringBuilder("GET /health HTTP/1.1\r\nHost: x\r\n");
        for (int i = 0; i < 5000; i++) many.append("X-H").append(i).append(": v\r\n");
        assertThat(exchangeExpectingClose(many.append("\r\n").toString()).status).isEqualTo(431);
    }

    @Test
    @Order(8)
    void slowAndEndlessClientsAreCutOff() throws Exception {
        // A head that never ends, a body that never comes, a chunked body that never ends.
        for (String partial : List.of("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                post("/v1/completions", GREEDY, true).substring(0, post("/v1/completions", GREEDY, true).length() - 10),
                "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY
                        + "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"pro\r\n")) {
            Reply r = exchangeExpectingClose(partial);
            assertThat(r.closed).as("closed: " + partial.lines().findFirst().orElse("")).isTrue();
            assertThat(r.status).isIn(408, -1);
        }
        // An idle keep-alive connection is closed too.
        Reply idle = exchangeExpectingClose("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assertThat(idle.status).isEqualTo(200);
        assertThat(idle.closed).as("idle keep-alive connection closed by the server").isTrue();
    }

    @Test
    @Order(9)
    void fiftyPipelinedRequestsAreAnsweredInOrder() throws Exception {
        StringBuilder all = new StringBuilder();
        for (int i = 0; i < 50; i++) all.append("GET /v1/models/").append(i % 2 == 0 ? "stories260K" : "m" + i).append(" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ").append(KEY).append("\r\n\r\n");
        try (Socket s = socket()) {
            send(s, all.toString());
            for (int i = 0; i < 50; i++) {
                Reply r = response(s.getInputStream());
                assertThat(r.status).as("response " + i).isEqualTo(i % 2 == 0 ? 200 : 404);
            }
        }
    }

    // ---------------------------------------------------------------- afterwards

    @Test
    @Order(100)
    void theServerStillServesTheSameAnswerAndNothingLeaked() throws Exception {
        Reply after = exchange(post("/v1/completions", GREEDY, true));
        assertThat(after.status).isEqualTo(200);
        assertThat(JSON.readTree(after.body).at("/choices/0/text").asText()).isEqualTo(greedyBefore);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        Baseline now = Baseline.now();
        // connections closing and KV blocks freeing finish asynchronously: poll with a deadline
        while (System.nanoTime() < deadline && (now.fds > baseline.fds + 4 || engine.stats().kvBytesUsed() > 0)) {
            Thread.sleep(50);
            now = Baseline.now();
        }
        assertThat(engine.stats().kvBytesUsed()).isZero();
        assertThat(engine.stats().running()).isZero();
        assertThat(now.threads).isLessThanOrEqualTo(baseline.threads + 4);
        assertThat(now.fds).isLessThanOrEqualTo(baseline.fds + 4);
        assertThat(now.files).isEqualTo(baseline.files);
        assertThat(now.heap).isLessThan(baseline.heap + (64L << 20));
    }

    // ---------------------------------------------------------------- raw HTTP

    /** One response; {@code closed}: the server closed the connection after it (read to the end). */
    record Reply(int status, String body, boolean closed) {}

    static String auth(String request) {
        return request.replaceFirst("\r\n", "\r\nAuthorization: Bearer " + KEY + "\r\n");
    }

    static String post(String path, String json, boolean withKey) {
        return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + (withKey ? "Authorization: Bearer " + KEY + "\r\n" : "")
                + "Content-Length: " + json.getBytes(StandardCharsets.UTF_8).length + "\r\n\r\n" + json;
    }

    static Reply completion(String policyJson) throws IOException {
        return exchange(post("/v1/completions", "{\"prompt\": \"The dog\", \"max_tokens\": 6, \"temperature\": 0, \"kv_policy\": "
                + policyJson + "}", true));
    }

    static Socket socket() throws IOException {
        Socket s = new Socket("127.0.0.1", server.port());
        s.setSoTimeout(20_000);
        return s;
    }

    static void send(Socket s, String request) {
        try {
            s.getOutputStream().write(request.getBytes(StandardCharsets.UTF_8));
            s.getOutputStream().flush();
        } catch (IOException refusedMidWrite) {
            // the server answered and closed before taking the whole request (413, 431): read what it said
        }
    }

    /** Sends {@code request} on a fresh connection and reads the first response. */
    static Reply exchange(String request) throws IOException {
        try (Socket s = socket()) {
            send(s, request);
            return response(s.getInputStream());
        }
    }

    /** Sends {@code request} and reads the response and then to the end: the server must close the connection. */
    static Reply exchangeExpectingClose(String request) throws IOException {
        try (Socket s = socket()) {
            send(s, request);
            return closing(s);
        }
    }

    /** The next response, if any, then whether the server closes the connection within the socket's timeout. */
    static Reply closing(Socket s) throws IOException {
        InputStream in = s.getInputStream();
        Reply r = response(in);
        boolean closed;
        try {
            closed = r.closed || in.read() < 0;
        } catch (java.net.SocketException reset) {
            closed = true;
        } catch (SocketTimeoutException stillOpen) {
            closed = false;
        }
        return new Reply(r.status, r.body, closed);
    }

    /** Reads one HTTP/1.1 response (Content-Length or chunked body); status -1 when the connection ended first. */
    static Reply response(InputStream in) throws IOException {
        ByteArrayOutputStream head = new ByteArrayOutputStream();
        try {
            while (!head.toString(StandardCharsets.ISO_8859_1).endsWith("\r\n\r\n")) {
                int b = in.read();
                if (b < 0) return new Reply(-1, "", true);
                head.write(b);
            }
        } catch (java.net.SocketException reset) {
            return new Reply(-1, "", true);
        }
        String h = head.toString(StandardCharsets.ISO_8859_1);
        int status = Integer.parseInt(h.substring(9, 12));
        String lower = h.toLowerCase(java.util.Locale.ROOT);
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        var length = java.util.regex.Pattern.compile("content-length: *(\\d+)").matcher(lower);
        if (length.find()) {
            body.write(in.readNBytes(Integer.parseInt(length.group(1))));
        } else if (lower.contains("transfer-encoding: chunked")) {
            while (true) {
                String size = line(in);
                int n = Integer.parseInt(size.split(";")[0].trim(), 16);
                if (n == 0) {
                    line(in);
                    break;
                }
                body.write(in.readNBytes(n));
                line(in);
            }
        }
        return new Reply(status, body.toString(StandardCharsets.UTF_8), false);
    }

    private static String line(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        for (int c; (c = in.read()) >= 0 && c != '\n'; ) if (c != '\r') b.write(c);
        return b.toString(StandardCharsets.ISO_8859_1);
    }
}
