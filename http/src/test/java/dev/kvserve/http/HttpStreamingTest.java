package dev.kvserve.http;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kvserve.scheduler.FinishReason;
import dev.kvserve.scheduler.GenerationResult;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Connection-level behaviour: disconnects, slow readers, pipelining, keep-alive and shutdown. */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class HttpStreamingTest {

    private static final int BIG_CONTEXT = 1 << 20;

    static String streamRequest(String path, String json) {
        return streamRequest(path, json, "");
    }

    static String streamRequest(String path, String json, String extraHeaders) {
        return "POST " + path + " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: "
                + json.getBytes(StandardCharsets.UTF_8).length + "\r\n" + extraHeaders + "\r\n" + json;
    }

    /** Reads from the socket until {@code marker} has appeared; returns everything read. */
    static String readUntil(InputStream in, String marker) throws IOException {
        ByteArrayOutputStream seen = new ByteArrayOutputStream();
        byte[] buf = new byte[4096];
        while (!seen.toString(StandardCharsets.UTF_8).contains(marker)) {
            int n = in.read(buf);
            if (n < 0) throw new IOException("connection closed before '" + marker + "'; got: " + seen);
            seen.write(buf, 0, n);
        }
        return seen.toString(StandardCharsets.UTF_8);
    }

    /** Reads until {@code frames} SSE data frames have arrived. */
    static void readFrames(InputStream in, int frames) throws IOException {
        StringBuilder raw = new StringBuilder();
        byte[] buf = new byte[4096];
        while (raw.toString().split("data: ", -1).length - 1 < frames) {
            int n = in.read(buf);
            if (n < 0) throw new IOException("connection closed after " + raw);
            raw.append(new String(buf, 0, n, StandardCharsets.UTF_8));
        }
    }

    /** Reads SSE chat chunks until their concatenated delta content equals {@code expected}. */
    static void readContentUntil(InputStream in, String expected) throws IOException {
        StringBuilder raw = new StringBuilder();
        byte[] buf = new byte[4096];
        java.util.regex.Pattern content = java.util.regex.Pattern.compile("\"content\":\"([^\"]*)\"");
        while (true) {
            StringBuilder text = new StringBuilder();
            java.util.regex.Matcher m = content.matcher(raw);
            while (m.find()) text.append(m.group(1));
            if (text.toString().equals(expected)) return;
            assertThat(expected).startsWith(text.toString());
            int n = in.read(buf);
            if (n < 0) throw new IOException("connection closed before content '" + expected + "'; got: " + raw);
            raw.append(new String(buf, 0, n, StandardCharsets.UTF_8));
        }
    }

    @Test
    void clientDisconnectMidStreamCancelsOnlyItsGeneration() throws Exception {
        ScriptedBackend backend = new ScriptedBackend("abcdefghij", BIG_CONTEXT, 64, null);
        HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        try (HttpServer server = HttpServer.start(backend, ServerOptions.defaults().withPort(0))) {
            backend.hold();
            // A bystander on its own connection, streaming alongside.
            CompletableFuture<HttpResponse<String>> bystander = client.sendAsync(
                    HttpRequest.newBuilder(URI.create(server.url() + "/v1/chat/completions"))
                            .header("Content-Type", "application/json")
                            .POST(HttpRequest.BodyPublishers.ofString("""
                                    {"messages": [{"role": "user", "content": "x"}], "max_tokens": 30,
                                     "ignore_eos": true, "stream": true}""")).build(),
                    HttpResponse.BodyHandlers.ofString());
            try (Socket socket = new Socket("127.0.0.1", server.port())) {
                socket.setSoTimeout(30_000);
                OutputStream out = socket.getOutputStream();
                out.write(streamRequest("/v1/chat/completions", """
                        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 100000, "ignore_eos": true,
                         "stream": true}""").getBytes(StandardCharsets.UTF_8));
                out.flush();
                InputStream in = socket.getInputStream();
                String head = readUntil(in, "\"role\":\"assistant\"");
                assertThat(head).startsWith("HTTP/1.1 200 OK").contains("transfer-encoding: chunked");
                // Each engine step advances every running generation by a token; once both have
                // joined the engine, three steps give each "abc"...
                assertThat(backend.awaitRunning(2, 10, TimeUnit.SECONDS)).as("both generations running").isTrue();
                backend.allowSteps(3);
                readContentUntil(in, "abc");
                // ...and its generation is now parked mid-flight.
                assertThat(backend.activeGenerations()).isEqualTo(2);
            }
            assertThat(backend.cancelledLatch.await(10, TimeUnit.SECONDS)).as("the disconnect cancelled the generation").isTrue();
            assertThat(backend.cancels.get()).isEqualTo(1);
            GenerationResult cancelled = backend.finished.peek();
            assertThat(cancelled.finishReason()).isEqualTo(FinishReason.CANCELLED);
            assertThat(cancelled.completionTokens()).isEqualTo(3);
            assertThat(backend.activeGenerations()).isEqualTo(1);

            backend.release();
            HttpResponse<String> other = bystander.get(10, TimeUnit.SECONDS);
            List<JsonNode> events = Sse.events(other.body());
            StringBuilder text = new StringBuilder();
            for (JsonNode e : events) text.append(e.at("/choices/0/delta/content").asText(""));
            assertThat(text.toString()).isEqualTo("abcdefghij".repeat(3));
            assertThat(events.getLast().at("/choices/0/finish_reason").asText()).isEqualTo("length");
            assertThat(server.disconnectCancels()).isEqualTo(1);
            assertThat(backend.activeGenerations()).isZero();
        } finally {
            backend.close();
            client.shutdownNow();
        }
    }

    @Test
    void slowReaderGetsEveryTokenCoalesced() throws Exception {
        ScriptedBackend backend = new ScriptedBackend("0123456789", BIG_CONTEXT, 64, null);
        int tokens = 100_000;
        try (HttpServer server = HttpServer.start(backend, ServerOptions.defaults().withPort(0));
             Socket socket = new Socket("127.0.0.1", server.port())) {
            socket.setSoTimeout(30_000);
            socket.setReceiveBufferSize(16 << 10);
            socket.getOutputStream().write(streamRequest("/v1/completions",
                    "{\"prompt\": \"x\", \"max_tokens\": " + tokens + ", \"ignore_eos\": true, \"stream\": true}",
                    "Connection: close\r\n").getBytes(StandardCharsets.UTF_8));
            // Read nothing until the engine is done: everything it produced had to wait in the server.
            assertThat(backend.finishedLatch.await(60, TimeUnit.SECONDS)).isTrue();
            String response = new String(socket.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            String body = dechunk(response.substring(response.indexOf("\r\n\r\n") + 4));
            List<JsonNode> events = Sse.events(body);
            StringBuilder text = new StringBuilder();
            for (JsonNode e : events) text.append(e.at("/choices/0/text").asText());
            assertThat(text.toString()).isEqualTo("0123456789".repeat(tokens / 10));
            assertThat(events.getLast().at("/choices/0/finish_reason").asText()).isEqualTo("length");
            // One chunk per token would be 100000 events; a stalled reader gets them merged.
            assertThat(events.size()).isLessThan(tokens / 2);
        } finally {
            backend.close();
        }
    }

    @Test
    void pipelinedRequestsAreAnsweredInOrderOnOneConnection() throws Exception {
        ScriptedBackend backend = new ScriptedBackend("xyz", 256, 64, null);
        try (HttpServer server = HttpServer.start(backend, ServerOptions.defaults().withPort(0));
             Socket socket = new Socket("127.0.0.1", server.port())) {
            socket.setSoTimeout(30_000);
            String three = streamRequest("/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": 3}")
                    + "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
                    + streamRequest("/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": 2, \"stream\": true}")
                    + "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            socket.getOutputStream().write(three.getBytes(StandardCharsets.UTF_8));
            String all = new String(socket.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            int first = all.indexOf("\"text\":\"xyz\"");
            int second = all.indexOf("\"object\":\"list\"");
            int third = all.indexOf("data: [DONE]");
            int fourth = all.indexOf("\"status\":\"ok\"");
            assertThat(first).isPositive();
            assertThat(second).isGreaterThan(first);
            assertThat(third).isGreaterThan(second);
            assertThat(fourth).isGreaterThan(third);
            assertThat(all.split("HTTP/1.1 200 OK", -1)).hasSize(5);
        } finally {
            backend.close();
        }
    }

    @Test
    void keepAliveConnectionServesManyRequests() throws Exception {
        ScriptedBackend backend = new ScriptedBackend("xyz", 256, 64, null);
        try (HttpServer server = HttpServer.start(backend, ServerOptions.defaults().withPort(0));
             Socket socket = new Socket("127.0.0.1", server.port())) {
            socket.setSoTimeout(30_000);
            OutputStream out = socket.getOutputStream();
            InputStream in = socket.getInputStream();
            for (int i = 0; i < 3; i++) {
                out.write(streamRequest("/v1/chat/completions",
                        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 2, \"stream\": true}")
                        .getBytes(StandardCharsets.UTF_8));
                // Terminating zero-length chunk of the chunked stream.
                String response = readUntil(in, "data: [DONE]\n\n\r\n0\r\n\r\n");
                assertThat(response).startsWith("HTTP/1.1 200 OK");
            }
        } finally {
            backend.close();
        }
    }

    @Test
    void shutdownLetsRunningRequestsFinishThenAbortsTheRest() throws Exception {
        ScriptedBackend backend = new ScriptedBackend("abc", BIG_CONTEXT, 64, null);
        HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        HttpServer server = HttpServer.start(backend, ServerOptions.defaults().withPort(0));
        try {
            backend.hold();
            HttpResponse<InputStream> running = client.send(HttpRequest.newBuilder(URI.create(server.url() + "/v1/completions"))
                            .header("Content-Type", "application/json")
                            .POST(HttpRequest.BodyPublishers.ofString(
                                    "{\"prompt\": \"x\", \"max_tokens\": 1000, \"ignore_eos\": true, \"stream\": true}")).build(),
                    HttpResponse.BodyHandlers.ofInputStream());
            assertThat(running.statusCode()).isEqualTo(200);
            assertThat(server.inFlight()).isEqualTo(1);
            CountDownLatch stopped = new CountDownLatch(1);
            Thread.ofPlatform().start(() -> {
                server.shutdown(Duration.ZERO);
                stopped.countDown();
            });
            String body;
            try (InputStream in = running.body()) {
                body = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            }
            List<JsonNode> events = Sse.events(body);
            assertThat(events.getLast().at("/choices/0/finish_reason").asText()).isEqualTo("abort");
            assertThat(stopped.await(20, TimeUnit.SECONDS)).isTrue();
            assertThat(backend.activeGenerations()).isZero();
            assertThatThrownBy(() -> client.send(HttpRequest.newBuilder(URI.create(server.url() + "/health")).build(),
                    HttpResponse.BodyHandlers.ofString())).isInstanceOf(IOException.class);
        } finally {
            server.close();
            backend.close();
            client.shutdownNow();
        }
    }

    /** Undoes HTTP/1.1 chunked transfer coding. */
    static String dechunk(String chunked) {
        StringBuilder out = new StringBuilder();
        int at = 0;
        byte[] bytes = chunked.getBytes(StandardCharsets.UTF_8);
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        while (true) {
            int lineEnd = indexOf(bytes, at);
            int size = Integer.parseInt(new String(bytes, at, lineEnd - at, StandardCharsets.US_ASCII).trim(), 16);
            at = lineEnd + 2;
            if (size == 0) break;
            body.write(bytes, at, size);
            at += size + 2;
        }
        out.append(body.toString(StandardCharsets.UTF_8));
        return out.toString();
    }

    private static int indexOf(byte[] bytes, int from) {
        for (int i = from; i + 1 < bytes.length; i++) if (bytes[i] == '\r' && bytes[i + 1] == '\n') return i;
        throw new IllegalStateException("no CRLF after " + from);
    }
}
