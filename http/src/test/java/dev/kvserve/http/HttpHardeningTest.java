package dev.kvserve.http;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kvserve.http.openai.Json;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Transport limits, over raw sockets: request-read and keep-alive timeouts, header limits, framing
 * that could smuggle a request, pipelining back-pressure, the connection cap and API keys. Every
 * refusal must be an answer (status and OpenAI's error JSON), never silence or a reset.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class HttpHardeningTest {

    static final Duration KEEP_ALIVE = Duration.ofMillis(1500);
    static final Duration REQUEST_READ = Duration.ofMillis(1000);
    /** Longest a test waits for the server to answer or close. */
    static final int READ_TIMEOUT_MS = 6000;
    static ScriptedBackend backend;
    static HttpServer server;

    @BeforeAll
    static void start() throws Exception {
        backend = new ScriptedBackend("Hello", 1 << 20, 64, null);
        server = HttpServer.start(backend, ServerOptions.defaults().withPort(0).withTimeouts(KEEP_ALIVE, REQUEST_READ));
    }

    @AfterAll
    static void stop() {
        server.close();
        backend.close();
    }

    /** One parsed response. */
    record Response(int status, String head, String body) {
        JsonNode error() throws IOException {
            JsonNode json = Json.MAPPER.readTree(body);
            assertThat(json.get("error").has("message")).isTrue();
            return json.get("error");
        }
    }

    static Socket connect(HttpServer s) throws IOException {
        Socket socket = new Socket("127.0.0.1", s.port());
        socket.setSoTimeout(READ_TIMEOUT_MS);
        return socket;
    }

    /** Reads until the server closes (bounded by the socket's read timeout). */
    static String readToClose(Socket socket) throws IOException {
        return new String(socket.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    }

    /** Reads exactly one Content-Length framed response. */
    static Response readResponse(InputStream in) throws IOException {
        ByteArrayOutputStream head = new ByteArrayOutputStream();
        while (!head.toString(StandardCharsets.ISO_8859_1).endsWith("\r\n\r\n")) {
            int b = in.read();
            if (b < 0) throw new IOException("closed before a whole head; got: " + head);
            head.write(b);
        }
        String h = head.toString(StandardCharsets.ISO_8859_1);
        Matcher length = Pattern.compile("(?i)content-length: (\\d+)").matcher(h);
        assertThat(length.find()).as(h).isTrue();
        byte[] body = in.readNBytes(Integer.parseInt(length.group(1)));
        return new Response(Integer.parseInt(h.substring(9, 12)), h, new String(body, StandardCharsets.UTF_8));
    }

    /** Parses a whole response text (head + Content-Length body), as read up to the close. */
    static Response parse(String raw) {
        assertThat(raw).as("an answer, not silence").startsWith("HTTP/1.1 ");
        int split = raw.indexOf("\r\n\r\n");
        return new Response(Integer.parseInt(raw.substring(9, 12)), raw.substring(0, split + 4), raw.substring(split + 4));
    }

    /** Sends {@code request} on a new connection and reads until the server closes it. */
    static Response exchangeAndClose(String request) throws IOException {
        try (Socket socket = connect(server)) {
            socket.getOutputStream().write(request.getBytes(StandardCharsets.UTF_8));
            return parse(readToClose(socket));
        }
    }

    static String get(String path, String extraHeaders) {
        return "GET " + path + " HTTP/1.1\r\nHost: x\r\n" + extraHeaders + "\r\n";
    }

    // ---------------------------------------------------------------- timeouts

    @Test
    @Order(1)
    void slowlorisHeadGets408() throws Exception {
        long start = System.nanoTime();
        Response r = exchangeAndClose("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: appl");
        assertThat(r.status()).isEqualTo(408);
        assertThat(r.head()).containsIgnoringCase("connection: close");
        assertThat(r.error().get("code").asText()).isEqualTo("request_timeout");
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isBetween(REQUEST_READ.minusMillis(100), Duration.ofSeconds(5));
    }

    @Test
    @Order(2)
    void halfSentBodyGets408() throws Exception {
        Response r = exchangeAndClose("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + "Content-Length: 100\r\n\r\n{\"prompt\": ");
        assertThat(r.status()).isEqualTo(408);
        assertThat(backend.submitted).isEmpty();
    }

    @Test
    @Order(3)
    void endlessChunkedBodyGets408EvenWhileBytesKeepComing() throws Exception {
        try (Socket socket = connect(server)) {
            OutputStream out = socket.getOutputStream();
            out.write(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + "Transfer-Encoding: chunked\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
            // A dribbling client: a tiny chunk every 100 ms never lets the body end.
            Thread dribbler = Thread.ofVirtual().start(() -> {
                try {
                    while (true) {
                        out.write("1\r\n \r\n".getBytes(StandardCharsets.US_ASCII));
                        out.flush();
                        Thread.sleep(100);
                    }
                } catch (IOException | InterruptedException e) {
                    // the server closed the connection, or the test is over
                }
            });
            try {
                long start = System.nanoTime();
                Response r = parse(readToClose(socket));
                assertThat(r.status()).isEqualTo(408);
                assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(5));
            } finally {
                dribbler.interrupt();
            }
        }
    }

    @Test
    @Order(4)
    void idleKeepAliveConnectionIsClosed() throws Exception {
        try (Socket socket = connect(server)) {
            socket.getOutputStream().write(get("/health", "").getBytes(StandardCharsets.US_ASCII));
            InputStream in = socket.getInputStream();
            assertThat(readResponse(in).status()).isEqualTo(200);
            long start = System.nanoTime();
            assertThat(in.read()).as("closed, without a response").isEqualTo(-1);
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isBetween(KEEP_ALIVE.minusMillis(200), Duration.ofSeconds(5));
        }
        // A connection that never sends anything is idle too.
        try (Socket silent = connect(server)) {
            assertThat(silent.getInputStream().read()).isEqualTo(-1);
        }
    }

    @Test
    @Order(5)
    void streamOutlastingBothTimeoutsIsNotCut() throws Exception {
        backend.hold();
        try (Socket socket = connect(server)) {
            socket.getOutputStream().write(HttpStreamingTest.streamRequest("/v1/completions",
                    "{\"prompt\": \"x\", \"max_tokens\": 5, \"stream\": true}", "Connection: close\r\n")
                    .getBytes(StandardCharsets.UTF_8));
            InputStream in = socket.getInputStream();
            assertThat(HttpStreamingTest.readUntil(in, "\r\n\r\n")).startsWith("HTTP/1.1 200 OK");
            // Nothing moves for longer than both timeouts together: the server must keep the stream.
            socket.setSoTimeout((int) (KEEP_ALIVE.plus(REQUEST_READ).toMillis() + 500));
            assertThatThrownBy(in::read).isInstanceOf(SocketTimeoutException.class);
            socket.setSoTimeout(READ_TIMEOUT_MS);
            backend.release();
            String rest = readToClose(socket);
            assertThat(rest).contains("data: [DONE]");
        } finally {
            backend.release();
        }
    }

    // ---------------------------------------------------------------- header limits

    @Test
    @Order(10)
    void hugeHeaderIs431() throws Exception {
        Response r = exchangeAndClose(get("/health", "X-Big: " + "a".repeat(100_000) + "\r\n"));
        assertThat(r.status()).isEqualTo(431);
        assertThat(r.error().get("code").asText()).isEqualTo("request_header_fields_too_large");
        assertThat(r.head()).containsIgnoringCase("connection: close");
    }

    @Test
    @Order(11)
    void fiveThousandHeadersAre431() throws Exception {
        StringBuilder headers = new StringBuilder();
        for (int i = 0; i < 5000; i++) headers.append("X-H").append(i).append(": v\r\n");
        assertThat(exchangeAndClose(get("/health", headers.toString())).status()).isEqualTo(431);
    }

    @Test
    @Order(12)
    void moreThanAHundredSmallHeadersAre431() throws Exception {
        StringBuilder headers = new StringBuilder();
        for (int i = 0; i < RequestGuard.MAX_HEADER_COUNT + 1; i++) headers.append("X").append(i).append(": v\r\n");
        Response r = exchangeAndClose(get("/health", headers.toString()));
        assertThat(r.status()).isEqualTo(431);
        assertThat(r.error().get("message").asText()).isEqualTo("The request has 102 header fields; the limit is 100");
        // A hundred are fine.
        StringBuilder fine = new StringBuilder();
        for (int i = 0; i < RequestGuard.MAX_HEADER_COUNT - 2; i++) fine.append("X").append(i).append(": v\r\n");
        assertThat(exchangeAndClose(get("/health", fine + "Connection: close\r\n")).status()).isEqualTo(200);
    }

    @Test
    @Order(13)
    void longRequestLineIs414() throws Exception {
        Response r = exchangeAndClose(get("/v1/models/" + "m".repeat(20_000), ""));
        assertThat(r.status()).isEqualTo(414);
        assertThat(r.error().get("code").asText()).isEqualTo("uri_too_long");
    }

    // ---------------------------------------------------------------- framing (request smuggling)

    @ParameterizedTest(name = "{0}")
    @Order(20)
    @CsvSource(delimiter = '|', textBlock = """
            Content-Length: -1                                   | hello
            Content-Length: abc                                  | hello
            Content-Length: 5\\r\\nContent-Length: 6              | hello
            Content-Length: 5\\r\\nTransfer-Encoding: chunked     | 0\\r\\n\\r\\n
            Transfer-Encoding: chunked\\r\\nContent-Length: 5     | 0\\r\\n\\r\\n
            Transfer-Encoding: gzip                              | hello
            Transfer-Encoding: identity                          | hello
            Transfer-Encoding: gzip, chunked                     | 0\\r\\n\\r\\n
            Transfer-Encoding: chunked\\r\\nTransfer-Encoding: chunked | 0\\r\\n\\r\\n
            Transfer-Encoding: chunked                           | zz\\r\\nhello\\r\\n0\\r\\n\\r\\n
            """)
    void ambiguousFramingIs400AndCloses(String headers, String body) throws Exception {
        String smuggled = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
        Response r = exchangeAndClose("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + headers.replace("\\r\\n", "\r\n") + "\r\n\r\n" + body.replace("\\r\\n", "\r\n") + smuggled);
        assertThat(r.status()).isEqualTo(400);
        assertThat(r.head()).containsIgnoringCase("connection: close");
        assertThat(r.error().get("type").asText()).isEqualTo("invalid_request_error");
        // Only one answer: the request after the ambiguous one (a /health) was not served.
        assertThat(r.body()).doesNotContain("\"status\"");
    }

    // ---------------------------------------------------------------- pipelining

    @Test
    @Order(30)
    void fiftyPipelinedRequestsAreAllAnsweredInOrder() throws Exception {
        int n = 50;
        StringBuilder all = new StringBuilder();
        for (int i = 0; i < n; i++) all.append(get("/v1/models/m" + i, i == n - 1 ? "Connection: close\r\n" : ""));
        try (Socket socket = connect(server)) {
            socket.getOutputStream().write(all.toString().getBytes(StandardCharsets.US_ASCII));
            InputStream in = socket.getInputStream();
            for (int i = 0; i < n; i++) {
                Response r = readResponse(in);
                assertThat(r.status()).isEqualTo(404);
                assertThat(r.error().get("message").asText()).isEqualTo("The model 'm" + i + "' does not exist");
            }
            assertThat(in.read()).isEqualTo(-1);
        }
    }

    @Test
    @Order(31)
    void requestsPipelinedBehindAStreamWaitWithoutBeingDropped() throws Exception {
        backend.hold();
        try (Socket socket = connect(server)) {
            StringBuilder all = new StringBuilder(HttpStreamingTest.streamRequest("/v1/completions",
                    "{\"prompt\": \"x\", \"max_tokens\": 3, \"stream\": true}"));
            // Far more than ApiHandler.MAX_PIPELINED, so reading pauses and resumes several times (but
            // fewer than the 128 unanswered requests Netty's codec allows in one burst).
            int n = 100;
            for (int i = 0; i < n; i++) all.append(get("/v1/models/m" + i, i == n - 1 ? "Connection: close\r\n" : ""));
            socket.getOutputStream().write(all.toString().getBytes(StandardCharsets.US_ASCII));
            InputStream in = socket.getInputStream();
            assertThat(HttpStreamingTest.readUntil(in, "\r\n\r\n")).startsWith("HTTP/1.1 200 OK");
            backend.release();
            String rest = readToClose(socket);
            assertThat(rest).contains("data: [DONE]");
            Matcher models = Pattern.compile("The model 'm(\\d+)' does not exist").matcher(rest);
            int answered = 0;
            while (models.find()) assertThat(Integer.parseInt(models.group(1))).isEqualTo(answered++);
            assertThat(answered).isEqualTo(n);
        } finally {
            backend.release();
        }
    }

    // ---------------------------------------------------------------- echoes

    @Test
    @Order(40)
    void errorsEchoOnlyAShortPrefixOfClientText() throws Exception {
        String longType = "text/" + "x".repeat(5000);
        Response r = exchangeAndClose("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: " + longType
                + "\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        assertThat(r.status()).isEqualTo(415);
        String message = r.error().get("message").asText();
        assertThat(message).contains("got '" + longType.substring(0, 64) + "\u2026'").hasSizeLessThan(200);

        Response notFound = exchangeAndClose(get("/" + "p".repeat(5000), "Connection: close\r\n"));
        assertThat(notFound.status()).isEqualTo(404);
        assertThat(notFound.error().get("message").asText()).contains("p\u2026;").hasSizeLessThan(300);
    }

    // ---------------------------------------------------------------- connection cap

    @Test
    @Order(50)
    void connectionsOverTheCapGet503() throws Exception {
        ScriptedBackend small = new ScriptedBackend("x", 256, 64, null);
        try (HttpServer capped = HttpServer.start(small, ServerOptions.defaults().withPort(0).withMaxConnections(2));
             Socket first = connect(capped);
             Socket second = connect(capped)) {
            for (Socket s : List.of(first, second)) {
                s.getOutputStream().write(get("/health", "").getBytes(StandardCharsets.US_ASCII));
                assertThat(readResponse(s.getInputStream()).status()).isEqualTo(200);
            }
            try (Socket third = connect(capped)) {
                Response r = parse(readToClose(third));
                assertThat(r.status()).isEqualTo(503);
                assertThat(r.error().get("type").asText()).isEqualTo("server_error");
            }
            first.close();
            // The server sees the close asynchronously: retry (each try a full exchange) for a bounded time.
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            int status = 0;
            while (status != 200 && System.nanoTime() < deadline) {
                try (Socket again = connect(capped)) {
                    again.getOutputStream().write(get("/metrics", "Connection: close\r\n").getBytes(StandardCharsets.US_ASCII));
                    Response r = parse(readToClose(again));
                    status = r.status();
                    if (status == 200) {
                        assertThat(r.body()).contains("kvserve_http_refusals_total{reason=\"connection_limit\"} ");
                        assertThat(refusals(r.body(), "connection_limit")).isGreaterThanOrEqualTo(1);
                    }
                }
            }
            assertThat(status).isEqualTo(200);
        } finally {
            small.close();
        }
    }

    // ---------------------------------------------------------------- API keys

    @Test
    @Order(60)
    void apiKeysGuardV1Only() throws Exception {
        ScriptedBackend keyed = new ScriptedBackend("x", 256, 64, null);
        try (HttpServer guarded = HttpServer.start(keyed, ServerOptions.defaults().withPort(0)
                .withApiKeys(List.of("sk-one", "sk-two"), false));
             Socket socket = connect(guarded)) {
            OutputStream out = socket.getOutputStream();
            InputStream in = socket.getInputStream();
            List<Response> answers = new ArrayList<>();
            for (String headers : List.of("", "Authorization: Bearer sk-wrong\r\n", "Authorization: Basic c2stb25lOg==\r\n",
                    "Authorization: Bearer sk-two\r\n", "authorization: bearer sk-one\r\n")) {
                out.write(get("/v1/models", headers).getBytes(StandardCharsets.US_ASCII));
                answers.add(readResponse(in));
            }
            for (Response r : answers.subList(0, 3)) {
                assertThat(r.status()).isEqualTo(401);
                assertThat(r.head()).containsIgnoringCase("www-authenticate: Bearer");
                JsonNode error = r.error();
                assertThat(error.get("code").asText()).isEqualTo("invalid_api_key");
                assertThat(error.get("type").asText()).isEqualTo("invalid_request_error");
                assertThat(r.body()).doesNotContain("sk-");
            }
            assertThat(answers.get(0).error().get("message").asText()).startsWith("You didn't provide an API key");
            assertThat(answers.get(1).error().get("message").asText()).isEqualTo("Incorrect API key provided");
            assertThat(answers.get(3).status()).isEqualTo(200);
            assertThat(answers.get(4).status()).isEqualTo(200);
            // Unknown /v1 paths do not tell what exists without a key.
            out.write(get("/v1/embeddings", "").getBytes(StandardCharsets.US_ASCII));
            assertThat(readResponse(in).status()).isEqualTo(401);
            out.write(get("/health", "").getBytes(StandardCharsets.US_ASCII));
            assertThat(readResponse(in).status()).isEqualTo(200);
            out.write(get("/metrics", "").getBytes(StandardCharsets.US_ASCII));
            Response metrics = readResponse(in);
            assertThat(metrics.status()).isEqualTo(200);
            assertThat(refusals(metrics.body(), "unauthorized")).isEqualTo(4);
        } finally {
            keyed.close();
        }
    }

    @Test
    @Order(61)
    void apiKeyOnEveryEndpoint() throws Exception {
        ScriptedBackend keyed = new ScriptedBackend("x", 256, 64, null);
        try (HttpServer guarded = HttpServer.start(keyed, ServerOptions.defaults().withPort(0)
                .withApiKeys(List.of("sk-one"), true));
             Socket socket = connect(guarded)) {
            OutputStream out = socket.getOutputStream();
            InputStream in = socket.getInputStream();
            out.write(get("/health", "").getBytes(StandardCharsets.US_ASCII));
            assertThat(readResponse(in).status()).isEqualTo(401);
            out.write(get("/metrics", "").getBytes(StandardCharsets.US_ASCII));
            assertThat(readResponse(in).status()).isEqualTo(401);
            out.write(get("/health", "Authorization: Bearer sk-one\r\n").getBytes(StandardCharsets.US_ASCII));
            assertThat(readResponse(in).status()).isEqualTo(200);
        } finally {
            keyed.close();
        }
        assertThat(ServerOptions.defaults().withApiKeys(List.of("sk-secret"), false).toString()).doesNotContain("sk-secret");
    }

    // ---------------------------------------------------------------- and afterwards

    @Test
    @Order(100)
    void afterAllThatTheServerStillServesAndCountedEveryRefusal() throws Exception {
        try (Socket socket = connect(server)) {
            OutputStream out = socket.getOutputStream();
            InputStream in = socket.getInputStream();
            out.write(HttpStreamingTest.streamRequest("/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 3}")
                    .getBytes(StandardCharsets.UTF_8));
            Response completion = readResponse(in);
            assertThat(completion.status()).isEqualTo(200);
            assertThat(Json.MAPPER.readTree(completion.body()).at("/choices/0/text").asText()).isEqualTo("Hel");
            out.write(get("/metrics", "").getBytes(StandardCharsets.US_ASCII));
            String metrics = readResponse(in).body();
            assertThat(refusals(metrics, "request_timeout")).isGreaterThanOrEqualTo(3);
            assertThat(refusals(metrics, "idle_timeout")).isGreaterThanOrEqualTo(2);
            assertThat(refusals(metrics, "headers_too_large")).isGreaterThanOrEqualTo(3);
            assertThat(refusals(metrics, "uri_too_long")).isGreaterThanOrEqualTo(1);
            assertThat(refusals(metrics, "bad_framing")).isGreaterThanOrEqualTo(10);
            assertThat(refusals(metrics, "connection_limit")).isZero();
            assertThat(metrics).contains("kvserve_http_responses_total{endpoint=\"other\",status=\"408\"}");
        }
    }

    static long refusals(String metrics, String reason) {
        Matcher m = Pattern.compile("kvserve_http_refusals_total\\{reason=\"" + reason + "\"} (\\d+)").matcher(metrics);
        assertThat(m.find()).as(reason).isTrue();
        return Long.parseLong(m.group(1));
    }
}
