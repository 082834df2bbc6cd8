package dev.kvserve.http;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kvserve.http.openai.Json;
import dev.kvserve.scheduler.GenerationRequest;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** Every endpoint and response shape, over real HTTP, against the scripted engine. */
class HttpServerTest {

    static final String REPLY = "Hello, world! ";
    static ScriptedBackend backend;
    static HttpServer server;
    static HttpClient client;

    @BeforeAll
    static void start() throws Exception {
        backend = new ScriptedBackend(REPLY, 256, 64, null);
        server = HttpServer.start(backend, ServerOptions.defaults().withPort(0));
        client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    }

    @AfterAll
    static void stop() {
        server.close();
        backend.close();
        client.shutdownNow();
    }

    @BeforeEach
    void clearRecorded() {
        backend.submitted.clear();
    }

    static HttpResponse<String> post(String path, String json) throws IOException, InterruptedException {
        return client.send(HttpRequest.newBuilder(URI.create(server.url() + path))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(json)).build(), HttpResponse.BodyHandlers.ofString());
    }

    static HttpResponse<String> get(String path) throws IOException, InterruptedException {
        return client.send(HttpRequest.newBuilder(URI.create(server.url() + path)).GET().build(),
                HttpResponse.BodyHandlers.ofString());
    }

    static JsonNode json(HttpResponse<String> response) throws IOException {
        assertThat(response.headers().firstValue("content-type")).hasValue("application/json");
        return Json.MAPPER.readTree(response.body());
    }

    @Test
    void listsTheModel() throws Exception {
        HttpResponse<String> response = get("/v1/models");
        assertThat(response.statusCode()).isEqualTo(200);
        JsonNode body = json(response);
        assertThat(body.get("object").asText()).isEqualTo("list");
        assertThat(body.get("data")).hasSize(1);
        JsonNode model = body.get("data").get(0);
        assertThat(model.get("id").asText()).isEqualTo("scripted");
        assertThat(model.get("object").asText()).isEqualTo("model");
        assertThat(model.get("created").asLong()).isEqualTo(1_700_000_000L);
        assertThat(model.get("owned_by").asText()).isEqualTo("kvserve");
        assertThat(model.get("max_model_len").asInt()).isEqualTo(256);

        JsonNode one = json(get("/v1/models/scripted"));
        assertThat(one.get("id").asText()).isEqualTo("scripted");
        HttpResponse<String> missing = get("/v1/models/gpt-4");
        assertThat(missing.statusCode()).isEqualTo(404);
        assertThat(json(missing).at("/error/code").asText()).isEqualTo("model_not_found");
    }

    @Test
    void completionNonStreaming() throws Exception {
        long before = System.currentTimeMillis() / 1000;
        HttpResponse<String> response = post("/v1/completions", """
                {"model": "scripted", "prompt": "Hi", "max_tokens": 5, "temperature": 0}""");
        assertThat(response.statusCode()).isEqualTo(200);
        JsonNode body = json(response);
        assertThat(body.get("id").asText()).startsWith("cmpl-");
        assertThat(body.get("object").asText()).isEqualTo("text_completion");
        assertThat(body.get("created").asLong()).isBetween(before, System.currentTimeMillis() / 1000);
        assertThat(body.get("model").asText()).isEqualTo("scripted");
        assertThat(body.get("system_fingerprint").asText()).startsWith("fp_");
        assertThat(body.get("choices")).hasSize(1);
        JsonNode choice = body.get("choices").get(0);
        assertThat(choice.get("index").asInt()).isZero();
        assertThat(choice.get("text").asText()).isEqualTo("Hello");
        assertThat(choice.get("logprobs").isNull()).isTrue();
        assertThat(choice.get("finish_reason").asText()).isEqualTo("length");
        // BOS + "Hi"
        assertThat(body.at("/usage/prompt_tokens").asInt()).isEqualTo(3);
        assertThat(body.at("/usage/completion_tokens").asInt()).isEqualTo(5);
        assertThat(body.at("/usage/total_tokens").asInt()).isEqualTo(8);
        assertThat(fieldNames(body)).containsExactly("id", "object", "created", "model", "system_fingerprint", "choices", "usage");
    }

    @Test
    void completionEndsWithStopAtEndOfSequence() throws Exception {
        JsonNode body = json(post("/v1/completions", """
                {"prompt": "Hi", "max_tokens": 100}"""));
        JsonNode choice = body.get("choices").get(0);
        assertThat(choice.get("text").asText()).isEqualTo(REPLY);
        assertThat(choice.get("finish_reason").asText()).isEqualTo("stop");
        assertThat(body.at("/usage/completion_tokens").asInt()).isEqualTo(REPLY.length() + 1);
    }

    @Test
    void completionStreamingIsExactServerSentEvents() throws Exception {
        HttpResponse<String> response = post("/v1/completions", """
                {"prompt": "Hi", "max_tokens": 7, "stream": true}""");
        assertThat(response.statusCode()).isEqualTo(200);
        assertThat(response.headers().firstValue("content-type")).hasValue("text/event-stream; charset=utf-8");
        List<JsonNode> events = Sse.events(response.body());
        assertThat(events).isNotEmpty();
        StringBuilder text = new StringBuilder();
        String id = events.getFirst().get("id").asText();
        assertThat(id).startsWith("cmpl-");
        for (int i = 0; i < events.size(); i++) {
            JsonNode e = events.get(i);
            assertThat(e.get("object").asText()).isEqualTo("text_completion");
            assertThat(e.get("id").asText()).isEqualTo(id);
            assertThat(e.has("usage")).isFalse();
            JsonNode choice = e.get("choices").get(0);
            text.append(choice.get("text").asText());
            boolean last = i == events.size() - 1;
            assertThat(choice.get("finish_reason").isNull()).isEqualTo(!last);
            if (last) {
                assertThat(choice.get("finish_reason").asText()).isEqualTo("length");
                assertThat(choice.get("text").asText()).as("finish_reason rides on the last content chunk").isNotEmpty();
            }
        }
        assertThat(text.toString()).isEqualTo("Hello, ");
    }

    @Test
    void chatNonStreaming() throws Exception {
        HttpResponse<String> response = post("/v1/chat/completions", """
                {"model": "scripted", "messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Hi"}], "max_completion_tokens": 5}""");
        assertThat(response.statusCode()).isEqualTo(200);
        JsonNode body = json(response);
        assertThat(body.get("id").asText()).startsWith("chatcmpl-");
        assertThat(body.get("object").asText()).isEqualTo("chat.completion");
        JsonNode choice = body.get("choices").get(0);
        assertThat(choice.get("index").asInt()).isZero();
        assertThat(choice.at("/message/role").asText()).isEqualTo("assistant");
        assertThat(choice.at("/message/content").asText()).isEqualTo("Hello");
        assertThat(choice.get("logprobs").isNull()).isTrue();
        assertThat(choice.get("finish_reason").asText()).isEqualTo("length");
        // The fallback transcript, tokenized byte by byte after BOS.
        String prompt = "system: Be brief.\nuser: Hi\nassistant:";
        assertThat(body.at("/usage/prompt_tokens").asInt()).isEqualTo(prompt.length() + 1);
        GenerationRequest submitted = backend.submitted.peek();
        assertThat(submitted.promptTokens()).isEqualTo(backend.tokenize(prompt, true));
    }

    @Test
    void chatStreamingWithUsage() throws Exception {
        HttpResponse<String> response = post("/v1/chat/completions", """
                {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 100, "stream": true,
                 "stream_options": {"include_usage": true}}""");
        assertThat(response.statusCode()).isEqualTo(200);
        List<JsonNode> events = Sse.events(response.body());
        assertThat(events.size()).isGreaterThanOrEqualTo(3);
        JsonNode first = events.getFirst();
        assertThat(first.get("object").asText()).isEqualTo("chat.completion.chunk");
        assertThat(first.at("/choices/0/delta/role").asText()).isEqualTo("assistant");
        assertThat(first.at("/choices/0/delta/content").asText()).isEmpty();
        assertThat(first.at("/choices/0/finish_reason").isNull()).isTrue();
        assertThat(first.get("usage").isNull()).isTrue();
        JsonNode usageChunk = events.getLast();
        assertThat(usageChunk.get("choices")).isEmpty();
        assertThat(usageChunk.at("/usage/completion_tokens").asInt()).isEqualTo(REPLY.length() + 1);
        assertThat(usageChunk.at("/usage/prompt_tokens").asInt()).isEqualTo("user: Hi\nassistant:".length() + 1);
        StringBuilder text = new StringBuilder();
        List<JsonNode> content = events.subList(1, events.size() - 1);
        for (int i = 0; i < content.size(); i++) {
            JsonNode e = content.get(i);
            assertThat(e.get("usage").isNull()).isTrue();
            assertThat(e.at("/choices/0/delta").has("role")).isFalse();
            text.append(e.at("/choices/0/delta/content").asText());
            boolean last = i == content.size() - 1;
            assertThat(e.at("/choices/0/finish_reason").isNull()).isEqualTo(!last);
        }
        assertThat(content.getLast().at("/choices/0/finish_reason").asText()).isEqualTo("stop");
        assertThat(text.toString()).isEqualTo(REPLY);
    }

    @Test
    void chatLogprobs() throws Exception {
        JsonNode body = json(post("/v1/chat/completions", """
                {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "logprobs": true, "top_logprobs": 2}"""));
        JsonNode logprobs = body.at("/choices/0/logprobs");
        assertThat(logprobs.get("refusal").isNull()).isTrue();
        JsonNode content = logprobs.get("content");
        assertThat(content).hasSize(3);
        JsonNode first = content.get(0);
        assertThat(first.get("token").asText()).isEqualTo("H");
        assertThat(first.get("logprob").asDouble()).isEqualTo(-0.125);
        assertThat(first.get("bytes")).hasSize(1);
        assertThat(first.get("bytes").get(0).asInt()).isEqualTo('H');
        assertThat(first.get("top_logprobs")).hasSize(2);
        assertThat(first.at("/top_logprobs/0/token").asText()).isEqualTo("a");
        assertThat(first.at("/top_logprobs/0/logprob").asDouble()).isEqualTo(-0.25);
        assertThat(first.at("/top_logprobs/1/bytes/0").asInt()).isEqualTo('b');
        assertThat(backend.submitted.peek().logprobs()).isEqualTo(2);

        JsonNode chosenOnly = json(post("/v1/chat/completions", """
                {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "logprobs": true}"""));
        assertThat(chosenOnly.at("/choices/0/logprobs/content/0/top_logprobs")).isEmpty();
    }

    @Test
    void completionLogprobsAndEcho() throws Exception {
        JsonNode body = json(post("/v1/completions", """
                {"prompt": "Hi", "max_tokens": 3, "logprobs": 2}"""));
        JsonNode logprobs = body.at("/choices/0/logprobs");
        assertThat(Json.MAPPER.convertValue(logprobs.get("tokens"), List.class)).containsExactly("H", "e", "l");
        assertThat(logprobs.get("token_logprobs")).hasSize(3);
        assertThat(logprobs.at("/token_logprobs/0").asDouble()).isEqualTo(-0.125);
        assertThat(logprobs.at("/top_logprobs/0").size()).isEqualTo(3);
        assertThat(logprobs.at("/top_logprobs/0/a").asDouble()).isEqualTo(-0.25);
        assertThat(logprobs.at("/top_logprobs/0/H").asDouble()).isEqualTo(-0.125);
        assertThat(Json.MAPPER.convertValue(logprobs.get("text_offset"), List.class)).containsExactly(0, 1, 2);

        JsonNode echoed = json(post("/v1/completions", """
                {"prompt": "Hi", "max_tokens": 3, "echo": true}"""));
        assertThat(echoed.at("/choices/0/text").asText()).isEqualTo("HiHel");
    }

    @Test
    void severalChoicesAndPrompts() throws Exception {
        JsonNode body = json(post("/v1/completions", """
                {"prompt": ["a", "bc"], "max_tokens": 2, "n": 2, "seed": 40}"""));
        assertThat(body.get("choices")).hasSize(4);
        for (int i = 0; i < 4; i++) {
            assertThat(body.at("/choices/" + i + "/index").asInt()).isEqualTo(i);
            assertThat(body.at("/choices/" + i + "/text").asText()).isEqualTo("He");
        }
        // prompt tokens once per prompt: (1+1) + (1+2)
        assertThat(body.at("/usage/prompt_tokens").asInt()).isEqualTo(5);
        assertThat(body.at("/usage/completion_tokens").asInt()).isEqualTo(8);
        List<Long> seeds = new ArrayList<>();
        backend.submitted.forEach(r -> seeds.add(r.seed()));
        assertThat(seeds).containsExactly(40L, 41L, 40L, 41L);

        JsonNode tokens = json(post("/v1/completions", """
                {"prompt": [[256, 72], [256, 73, 74]], "max_tokens": 1}"""));
        assertThat(tokens.get("choices")).hasSize(2);
        assertThat(tokens.at("/usage/prompt_tokens").asInt()).isEqualTo(5);

        HttpResponse<String> streamed = post("/v1/chat/completions", """
                {"messages": [{"role": "user", "content": "x"}], "max_tokens": 3, "n": 2, "stream": true}""");
        List<JsonNode> events = Sse.events(streamed.body());
        StringBuilder[] texts = {new StringBuilder(), new StringBuilder()};
        int[] roles = new int[2];
        int[] finishes = new int[2];
        for (JsonNode e : events) {
            JsonNode c = e.at("/choices/0");
            int index = c.get("index").asInt();
            if (c.at("/delta/role").isTextual()) roles[index]++;
            texts[index].append(c.at("/delta/content").asText(""));
            if (!c.get("finish_reason").isNull()) finishes[index]++;
        }
        assertThat(roles).containsExactly(1, 1);
        assertThat(finishes).containsExactly(1, 1);
        assertThat(texts[0].toString()).isEqualTo("Hel");
        assertThat(texts[1].toString()).isEqualTo("Hel");
    }

    @Test
    void samplingParametersReachTheEngine() throws Exception {
        post("/v1/completions", """
                {"prompt": "Hi", "max_tokens": 4, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
                 "presence_penalty": 0.5, "frequency_penalty": -0.5, "repetition_penalty": 1.1, "stop": ["\\n", "END"],
                 "seed": 7, "kv_policy": "int4:group=32", "ignore_eos": true, "user": "someone"}""");
        GenerationRequest r = backend.submitted.peek();
        assertThat(r.maxTokens()).isEqualTo(4);
        assertThat(r.temperature()).isEqualTo(0.7f);
        assertThat(r.topP()).isEqualTo(0.9f);
        assertThat(r.topK()).isEqualTo(40);
        assertThat(r.minP()).isEqualTo(0.05f);
        assertThat(r.presencePenalty()).isEqualTo(0.5f);
        assertThat(r.frequencyPenalty()).isEqualTo(-0.5f);
        assertThat(r.repetitionPenalty()).isEqualTo(1.1f);
        assertThat(r.stop()).containsExactly("\n", "END");
        assertThat(r.seed()).isEqualTo(7L);
        assertThat(r.kvPolicy()).isEqualTo("int4:group=32");
        assertThat(r.ignoreEos()).isTrue();
        assertThat(r.logprobs()).isZero();

        backend.submitted.clear();
        post("/v1/completions", """
                {"prompt": "Hi", "stop": "x", "top_k": -1}""");
        GenerationRequest defaults = backend.submitted.peek();
        assertThat(defaults.maxTokens()).as("the legacy endpoint's default").isEqualTo(16);
        assertThat(defaults.stop()).containsExactly("x");
        assertThat(defaults.topK()).isZero();
        assertThat(defaults.temperature()).isEqualTo(1.0f);
        assertThat(defaults.seed()).isNull();
        assertThat(defaults.kvPolicy()).isNull();

        backend.submitted.clear();
        post("/v1/chat/completions", """
                {"messages": [{"role": "user", "content": "Hi"}]}""");
        int prompt = "user: Hi\nassistant:".length() + 1;
        assertThat(backend.submitted.peek().maxTokens()).as("chat fills the context by default").isEqualTo(256 - prompt);
    }

    @Test
    void healthAndMetrics() throws Exception {
        HttpResponse<String> health = get("/health");
        assertThat(health.statusCode()).isEqualTo(200);
        assertThat(json(health).get("status").asText()).isEqualTo("ok");

        post("/v1/completions", """
                {"prompt": "Hi", "max_tokens": 1}""");
        HttpResponse<String> metrics = get("/metrics");
        assertThat(metrics.statusCode()).isEqualTo(200);
        assertThat(metrics.headers().firstValue("content-type")).hasValue("text/plain; version=0.0.4; charset=utf-8");
        String text = metrics.body();
        assertThat(text).contains("# TYPE kvserve_requests_running gauge\nkvserve_requests_running ");
        assertThat(text).contains("kvserve_requests_waiting 0\n");
        assertThat(text).contains("kvserve_kv_blocks_used 3\n", "kvserve_kv_blocks_free 5\n");
        assertThat(text).contains("kvserve_kv_bytes_used{tier=\"hot\"} 1024\n");
        assertThat(text).contains("kvserve_kv_compression_ratio 4\n");
        assertThat(text).contains("kvserve_prompt_tokens_total 7\n", "kvserve_generation_tokens_total 11\n");
        assertThat(text).contains("# TYPE kvserve_time_to_first_token_seconds histogram\n");
        assertThat(text).contains("kvserve_inter_token_latency_seconds_bucket{le=\"+Inf\"} 0\n");
        assertThat(text).containsPattern("kvserve_http_responses_total\\{endpoint=\"/v1/completions\",status=\"200\"} [1-9]");
        assertThat(text).contains("# TYPE kvserve_http_requests_in_flight gauge\n");
        for (String line : text.split("\n")) {
            assertThat(line).matches("# (HELP|TYPE) \\w+ .+|\\w+(\\{[^}]*})? [-+0-9.eE]+|\\w+(\\{[^}]*})? \\+Inf");
        }
    }

    private static List<String> fieldNames(JsonNode node) {
        List<String> names = new ArrayList<>();
        node.fieldNames().forEachRemaining(names::add);
        return names;
    }
}
