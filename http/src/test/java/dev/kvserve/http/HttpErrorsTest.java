package dev.kvserve.http;

import dev.kvserve.scheduler.EngineHealth;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kvserve.http.openai.Json;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/** Every refusal: its status, OpenAI's error shape, the offending field, and a message that says what was wrong. */
class HttpErrorsTest {

    static ScriptedBackend backend;
    static HttpServer server;
    static HttpClient client;

    @BeforeAll
    static void start() throws Exception {
        backend = new ScriptedBackend("Hello, world! ", 256, 64, null);
        server = HttpServer.start(backend, ServerOptions.defaults().withPort(0).withMaxBodyBytes(4096));
        client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    }

    @AfterAll
    static void stop() {
        server.close();
        backend.close();
        client.shutdownNow();
    }

    static HttpResponse<String> send(String method, String path, String contentType, String body) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(server.url() + path));
        if (contentType != null) b.header("Content-Type", contentType);
        b.method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
        return client.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    /** Asserts OpenAI's error object and returns it. */
    static JsonNode error(HttpResponse<String> response, int status) throws IOException {
        assertThat(response.statusCode()).as(response.body()).isEqualTo(status);
        assertThat(response.headers().firstValue("content-type")).hasValue("application/json");
        JsonNode body = Json.MAPPER.readTree(response.body());
        assertThat(body.size()).isEqualTo(1);
        JsonNode error = body.get("error");
        List<String> fields = List.of("message", "type", "param", "code");
        for (String f : fields) assertThat(error.has(f)).as("error has %s", f).isTrue();
        assertThat(error.size()).isEqualTo(4);
        assertThat(error.get("message").asText()).isNotBlank();
        assertThat(error.get("type").asText()).isNotBlank();
        return error;
    }

    @ParameterizedTest(name = "{0} {1} -> {2} {3}")
    @CsvSource(delimiter = '|', quoteCharacter = '`', textBlock = """
            /v1/completions      | {                                                       | 400 |                    | could not parse the JSON body
            /v1/completions      | `[1, 2]`                                                | 400 |                    | must be a JSON object, got an array
            /v1/completions      | {"prompt": "x"} trailing                                | 400 |                    | could not parse
            /v1/completions      | {"prompt": "x", "prompt": "y"}                          | 400 |                    | Duplicate field
            /v1/completions      | `{}`                                                    | 400 | prompt             | 'prompt' is required
            /v1/completions      | {"prompt": 5}                                           | 400 | prompt             | must be a string, an array of strings or an array of token ids, got an integer
            /v1/completions      | {"prompt": []}                                          | 400 | prompt             | must not be an empty array
            /v1/completions      | {"prompt": [1, "a"]}                                    | 400 | prompt[1]          | must be an integer
            /v1/completions      | {"prompt": [1, 999]}                                    | 400 | prompt             | token id 999 at position 1 is outside the vocabulary [0, 258)
            /v1/completions      | {"prompt": [-3]}                                        | 400 | prompt             | token id -3 at prompt[0] is out of range
            /v1/completions      | {"prompt": "x", "max_tokens": -1}                       | 400 | max_tokens         | 'max_tokens' must be >= 1, got -1
            /v1/completions      | {"prompt": "x", "max_tokens": 0}                        | 400 | max_tokens         | 'max_tokens' must be >= 1, got 0
            /v1/completions      | {"prompt": "x", "max_tokens": "10"}                     | 400 | max_tokens         | 'max_tokens' must be an integer, got a string: "10"
            /v1/completions      | {"prompt": "x", "max_tokens": 2.5}                      | 400 | max_tokens         | must be an integer, got a number: 2.5
            /v1/completions      | {"prompt": "x", "temperature": 2.5}                     | 400 | temperature        | 'temperature' must be in [0, 2], got 2.5
            /v1/completions      | {"prompt": "x", "temperature": -0.1}                    | 400 | temperature        | 'temperature' must be in [0, 2], got -0.1
            /v1/completions      | {"prompt": "x", "temperature": "hot"}                   | 400 | temperature        | must be a number, got a string
            /v1/completions      | {"prompt": "x", "top_p": 0}                             | 400 | top_p              | 'top_p' must be in (0, 1], got 0
            /v1/completions      | {"prompt": "x", "top_p": 1.01}                          | 400 | top_p              | 'top_p' must be in (0, 1], got 1.01
            /v1/completions      | {"prompt": "x", "top_k": -2}                            | 400 | top_k              | 'top_k' must be >= -1, got -2
            /v1/completions      | {"prompt": "x", "min_p": 1.5}                           | 400 | min_p              | 'min_p' must be in [0, 1]
            /v1/completions      | {"prompt": "x", "presence_penalty": 2.5}                | 400 | presence_penalty   | must be in [-2, 2]
            /v1/completions      | {"prompt": "x", "frequency_penalty": -3}                | 400 | frequency_penalty  | must be in [-2, 2]
            /v1/completions      | {"prompt": "x", "repetition_penalty": 0}                | 400 | repetition_penalty | must be in (0, 2]
            /v1/completions      | {"prompt": "x", "n": 0}                                 | 400 | n                  | 'n' must be >= 1, got 0
            /v1/completions      | {"prompt": "x", "n": 17}                                | 400 | n                  | 'n' must be <= 16, got 17
            /v1/completions      | {"prompt": ["a","b","c","d","e"], "n": 16}              | 400 | n                  | at most 64 sequences per request
            /v1/completions      | {"prompt": "x", "stop": 5}                              | 400 | stop               | must be a string or an array of strings
            /v1/completions      | {"prompt": "x", "stop": [""]}                           | 400 | stop               | must not contain empty strings
            /v1/completions      | {"prompt": "x", "stop": ["a", 1]}                       | 400 | stop[1]            | must be a string
            /v1/completions      | {"prompt": "x", "seed": "x"}                            | 400 | seed               | must be an integer
            /v1/completions      | {"prompt": "x", "stream": "yes"}                        | 400 | stream             | 'stream' must be a boolean
            /v1/completions      | {"prompt": "x", "stream_options": {"include_usage": true}} | 400 | stream_options  | only allowed when 'stream' is true
            /v1/completions      | {"prompt": "x", "logprobs": 21}                         | 400 | logprobs           | 'logprobs' must be <= 20
            /v1/completions      | {"prompt": "x", "logprobs": 1, "echo": true}            | 400 | echo               | not supported
            /v1/completions      | {"prompt": "x", "logit_bias": {"1": 5}}                 | 400 | logit_bias         | not supported
            /v1/completions      | {"prompt": "x", "suffix": "y"}                          | 400 | suffix             | not supported
            /v1/completions      | {"prompt": "x", "best_of": 3}                           | 400 | best_of            | not supported
            /v1/completions      | {"prompt": "x", "kv_policy": "bogus"}                   | 400 | kv_policy          | invalid kv_policy 'bogus': unknown KV policy 'bogus'
            /v1/completions      | {"prompt": "x", "kv_policy": " "}                       | 400 | kv_policy          | must not be blank
            /v1/completions      | {"prompt": "x", "model": "gpt-4"}                       | 404 | model              | The model 'gpt-4' does not exist
            /v1/completions      | {"prompt": "x", "model": 7}                             | 400 | model              | must be a string
            /v1/completions      | {"prompt": "x", "max_tokens": 255}                      | 400 | max_tokens         | maximum context length is 256 tokens. However, you requested 257 tokens (2 in the prompt, 255 in the completion)
            /v1/chat/completions | {"model": "scripted"}                                   | 400 | messages           | 'messages' is required
            /v1/chat/completions | {"messages": []}                                        | 400 | messages           | must contain at least one message
            /v1/chat/completions | {"messages": "hi"}                                      | 400 | messages           | must be an array, got a string
            /v1/chat/completions | {"messages": [5]}                                       | 400 | messages[0]        | must be an object
            /v1/chat/completions | {"messages": [{"content": "hi"}]}                       | 400 | messages[0].role   | is required
            /v1/chat/completions | {"messages": [{"role": "bot", "content": "hi"}]}        | 400 | messages[0].role   | must be one of system, developer, user, assistant, tool; got 'bot'
            /v1/chat/completions | {"messages": [{"role": "user"}]}                        | 400 | messages[0].content | is required for role 'user'
            /v1/chat/completions | {"messages": [{"role": "user", "content": 3}]}          | 400 | messages[0].content | must be a string or an array of content parts
            /v1/chat/completions | {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]} | 400 | messages[0].content[0].type | only content parts of type 'text' are supported, got 'image_url'
            /v1/chat/completions | {"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2} | 400 | top_logprobs | requires 'logprobs' to be true
            /v1/chat/completions | {"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21} | 400 | top_logprobs | must be <= 20
            /v1/chat/completions | {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 0} | 400 | max_completion_tokens | must be >= 1
            /v1/chat/completions | {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 250} | 400 | max_completion_tokens | However, you requested 269 tokens (19 in the messages, 250 in the completion)
            /v1/chat/completions | {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]} | 400 | tools | tool calling is not implemented
            /v1/chat/completions | {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}} | 400 | response_format | only response_format
            /v1/chat/completions | {"messages": [{"role": "user", "content": "x"}], "kv_policy": "int3:bad"} | 400 | kv_policy | unknown KV policy 'int3:bad'
            """)
    void refusesBadRequests(String path, String body, int status, String param, String message) throws Exception {
        JsonNode error = error(send("POST", path, "application/json", body), status);
        if (param == null) {
            assertThat(error.get("param").isNull()).isTrue();
        } else {
            assertThat(error.get("param").asText()).isEqualTo(param);
        }
        assertThat(error.get("message").asText()).contains(message);
        assertThat(error.get("type").asText()).isEqualTo("invalid_request_error");
    }

    @Test
    void promptLongerThanTheContextSaysTheLimits() throws Exception {
        int submittedBefore = backend.submitted.size();
        String longPrompt = "x".repeat(300);
        JsonNode error = error(send("POST", "/v1/completions", "application/json",
                "{\"prompt\": \"" + longPrompt + "\"}"), 400);
        assertThat(error.get("code").asText()).isEqualTo("context_length_exceeded");
        assertThat(error.get("param").asText()).isEqualTo("prompt");
        assertThat(error.get("message").asText())
                .isEqualTo("This model's maximum context length is 256 tokens. However, your prompt resulted in 301 tokens, "
                        + "leaving no room for the completion. Please reduce the length of the prompt.");
        JsonNode chat = error(send("POST", "/v1/chat/completions", "application/json",
                "{\"messages\": [{\"role\": \"user\", \"content\": \"" + longPrompt + "\"}]}"), 400);
        assertThat(chat.get("code").asText()).isEqualTo("context_length_exceeded");
        assertThat(chat.get("message").asText()).contains("your messages resulted in 318 tokens");
        assertThat(backend.submitted).hasSize(submittedBefore);
    }

    @Test
    void wrongContentTypeIs415() throws Exception {
        JsonNode error = error(send("POST", "/v1/completions", "text/plain", "{\"prompt\": \"x\"}"), 415);
        assertThat(error.get("message").asText()).contains("Content-Type must be application/json, got 'text/plain'");
        // A charset parameter is fine.
        assertThat(send("POST", "/v1/completions", "application/json; charset=utf-8", "{\"prompt\": \"x\", \"max_tokens\": 1}")
                .statusCode()).isEqualTo(200);
    }

    @Test
    void wrongMethodIs405WithAllow() throws Exception {
        HttpResponse<String> get = send("GET", "/v1/completions", null, null);
        JsonNode error = error(get, 405);
        assertThat(get.headers().firstValue("allow")).hasValue("POST");
        assertThat(error.get("message").asText()).isEqualTo("Method GET is not allowed on /v1/completions; use POST");
        HttpResponse<String> post = send("POST", "/v1/models", "application/json", "{}");
        error(post, 405);
        assertThat(post.headers().firstValue("allow")).hasValue("GET");
        error(send("DELETE", "/v1/chat/completions", null, null), 405);
        error(send("PUT", "/metrics", null, null), 405);
    }

    @Test
    void unknownPathIs404() throws Exception {
        JsonNode error = error(send("GET", "/v2/engines?x=1", null, null), 404);
        assertThat(error.get("code").asText()).isEqualTo("not_found");
        assertThat(error.get("message").asText()).startsWith("Unknown endpoint GET /v2/engines");
        error(send("POST", "/v1/embeddings", "application/json", "{}"), 404);
    }

    @Test
    void hugeBodyIs413() throws Exception {
        String big = "{\"prompt\": \"" + "x".repeat(10_000) + "\"}";
        JsonNode declared = error(send("POST", "/v1/completions", "application/json", big), 413);
        assertThat(declared.get("message").asText())
                .isEqualTo("The request body is too large: " + big.length() + " bytes, the limit is 4096 bytes");
        assertThat(declared.get("code").asText()).isEqualTo("request_too_large");

        // Chunked, no length up front: refused once the limit is crossed.
        InputStream body = new ByteArrayInputStream(big.getBytes());
        HttpResponse<String> chunked = client.send(HttpRequest.newBuilder(URI.create(server.url() + "/v1/completions"))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofInputStream(() -> body)).build(), HttpResponse.BodyHandlers.ofString());
        JsonNode streamed = error(chunked, 413);
        assertThat(streamed.get("message").asText()).isEqualTo("The request body is too large: the limit is 4096 bytes");
        // The server is still fine afterwards.
        assertThat(send("GET", "/health", null, null).statusCode()).isEqualTo(200);
    }

    @Test
    void healthSaysWhetherTheEngineServesAsProbesExpect() throws Exception {
        ScriptedBackend probed = new ScriptedBackend("abc", 256, 4, null);
        try (HttpServer s = HttpServer.start(probed, ServerOptions.defaults().withPort(0))) {
            record Case(EngineHealth.Status status, int health, int ready, int live, String word) {}
            for (Case c : List.of(new Case(EngineHealth.Status.SERVING, 200, 200, 200, "ok"),
                    new Case(EngineHealth.Status.RESTARTING, 503, 503, 200, "restarting"),
                    new Case(EngineHealth.Status.FAILED, 503, 503, 503, "engine_failed"))) {
                probed.health = new EngineHealth(c.status(), 1, "java.lang.Error: secret detail");
                for (var probe : Map.of("/health", c.health(), "/health/ready", c.ready(), "/health/live", c.live()).entrySet()) {
                    HttpResponse<String> r = client.send(HttpRequest.newBuilder(URI.create(s.url() + probe.getKey())).GET().build(),
                            HttpResponse.BodyHandlers.ofString());
                    assertThat(r.statusCode()).as(c.status() + " " + probe.getKey()).isEqualTo(probe.getValue());
                    assertThat(r.body()).contains("\"status\":\"" + c.word() + "\"").doesNotContain("secret");
                }
            }
        } finally {
            probed.close();
        }
    }

    @Test
    void fullQueueIs503() throws Exception {
        ScriptedBackend oneSlot = new ScriptedBackend("abc", 256, 1, null);
        try (HttpServer small = HttpServer.start(oneSlot, ServerOptions.defaults().withPort(0))) {
            oneSlot.hold();
            HttpResponse<InputStream> first = client.send(HttpRequest.newBuilder(URI.create(small.url() + "/v1/completions"))
                    .header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString("{\"prompt\": \"x\", \"max_tokens\": 2, \"stream\": true}")).build(),
                    HttpResponse.BodyHandlers.ofInputStream());
            // Headers arrive only after the first request's generation was submitted: the queue is full now.
            assertThat(first.statusCode()).isEqualTo(200);
            HttpResponse<String> second = client.send(HttpRequest.newBuilder(URI.create(small.url() + "/v1/chat/completions"))
                    .header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}")).build(),
                    HttpResponse.BodyHandlers.ofString());
            JsonNode error = error(second, 503);
            assertThat(error.get("type").asText()).isEqualTo("server_error");
            assertThat(error.get("message").asText()).contains("the waiting queue is full (1 requests waiting)");
            oneSlot.release();
            String rest;
            try (InputStream in = first.body()) {
                rest = new String(in.readAllBytes());
            }
            assertThat(Sse.events(rest)).isNotEmpty();
        } finally {
            oneSlot.close();
        }
    }

    @Test
    void malformedHttpIs400() throws Exception {
        try (var socket = new java.net.Socket("127.0.0.1", server.port())) {
            socket.getOutputStream().write("GARBAGE\r\n\r\n".getBytes());
            String response = new String(socket.getInputStream().readAllBytes());
            assertThat(response).startsWith("HTTP/1.1 400 Bad Request");
            assertThat(response).contains("\"type\":\"invalid_request_error\"");
        }
    }
}
