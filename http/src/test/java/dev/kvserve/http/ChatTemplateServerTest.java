package dev.kvserve.http;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kvserve.http.openai.Json;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;

import static org.assertj.core.api.Assertions.assertThat;

/** Chat requests through a model's own Jinja template: what gets tokenized, and template refusals. */
class ChatTemplateServerTest {

    static String template(String name) throws Exception {
        try (InputStream in = ChatTemplateServerTest.class.getResourceAsStream("/chat-templates/" + name)) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    static HttpResponse<String> chat(HttpServer server, HttpClient client, String json) throws Exception {
        return client.send(HttpRequest.newBuilder(URI.create(server.url() + "/v1/chat/completions"))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(json)).build(), HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void templateWritingBosIsNotGivenASecondOne() throws Exception {
        ScriptedBackend backend = new ScriptedBackend("ok", 512, 8, template("mistral.jinja"));
        HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        try (HttpServer server = HttpServer.start(backend, ServerOptions.defaults().withPort(0))) {
            HttpResponse<String> ok = chat(server, client, """
                    {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}""");
            assertThat(ok.statusCode()).isEqualTo(200);
            // The rendered text starts with "<s>" itself: tokenized as it is, no BOS id added.
            assertThat(backend.submitted.peek().promptTokens()).isEqualTo(backend.tokenize("<s>[INST] Hi [/INST]", false));

            HttpResponse<String> refused = chat(server, client, """
                    {"messages": [{"role": "user", "content": "A"}, {"role": "user", "content": "B"}]}""");
            assertThat(refused.statusCode()).isEqualTo(400);
            JsonNode error = Json.MAPPER.readTree(refused.body()).get("error");
            assertThat(error.get("param").asText()).isEqualTo("messages");
            assertThat(error.get("message").asText())
                    .isEqualTo("chat template: Conversation roles must alternate user/assistant/user/assistant/...");
        } finally {
            backend.close();
            client.shutdownNow();
        }
    }

    @Test
    void templateWithoutBosGetsTheModelsBos() throws Exception {
        ScriptedBackend backend = new ScriptedBackend("ok", 512, 8, template("qwen2.5.jinja"));
        HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        try (HttpServer server = HttpServer.start(backend, ServerOptions.defaults().withPort(0))) {
            HttpResponse<String> ok = chat(server, client, """
                    {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                     "max_tokens": 2}""");
            assertThat(ok.statusCode()).isEqualTo(200);
            String rendered = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
            assertThat(backend.submitted.peek().promptTokens()).isEqualTo(backend.tokenize(rendered, true));
        } finally {
            backend.close();
            client.shutdownNow();
        }
    }
}
