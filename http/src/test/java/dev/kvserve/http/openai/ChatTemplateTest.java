package dev.kvserve.http.openai;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kvserve.http.openai.ChatRequest.ChatMessage;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Real models' chat templates rendered by Jinjava must equal what Jinja2 itself renders
 * (the *.expected files, produced by render_reference.py with python-jinja2 3.1.6).
 */
class ChatTemplateTest {

    private static final List<String> TEMPLATES = List.of("tinyllama", "gemma2", "qwen2.5", "llama3.2", "mistral", "pystrings");
    private static final List<String> CONVERSATIONS = List.of("single", "multi", "alternating", "exchange");
    private static final Clock PINNED = Clock.fixed(LocalDateTime.of(2024, 7, 26, 9, 5, 3).toInstant(ZoneOffset.UTC), ZoneOffset.UTC);

    static Stream<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        for (String t : TEMPLATES) for (String c : CONVERSATIONS) out.add(Arguments.of(t, c));
        return out.stream();
    }

    @ParameterizedTest(name = "{0} / {1}")
    @MethodSource("cases")
    void rendersLikeJinja2(String template, String conversation) throws IOException {
        ChatTemplate chat = ChatTemplate.of(resource(template + ".jinja"), "<s>", "</s>", PINNED);
        String expected = resource(template + "." + conversation + ".expected");
        List<ChatMessage> messages = conversation(conversation);
        if (expected.startsWith("ERROR: ")) {
            assertThatThrownBy(() -> chat.render(messages))
                    .isInstanceOfSatisfying(ApiException.class, e -> {
                        assertThat(e.status()).isEqualTo(400);
                        assertThat(e.param()).isEqualTo("messages");
                    })
                    .hasMessage("chat template: " + expected.substring("ERROR: ".length()));
        } else {
            assertThat(chat.render(messages)).isEqualTo(expected);
        }
    }

    @Test
    void fallbackIsARoleTranscriptOpeningTheAssistantTurn() {
        ChatTemplate chat = ChatTemplate.of(null, "<s>", "</s>");
        assertThat(chat.isFallback()).isTrue();
        String out = chat.render(List.of(new ChatMessage("system", "Be kind.", null), new ChatMessage("user", "Hello", null)));
        assertThat(out).isEqualTo("system: Be kind.\nuser: Hello\nassistant:");
        assertThat(chat.startsWithBos(out)).isFalse();
    }

    @Test
    void detectsATemplateThatWritesBosItself() throws IOException {
        ChatTemplate chat = ChatTemplate.of(resource("mistral.jinja"), "<s>", "</s>");
        String out = chat.render(List.of(new ChatMessage("user", "x", null)));
        assertThat(chat.startsWithBos(out)).isTrue();
        ChatTemplate qwen = ChatTemplate.of(resource("qwen2.5.jinja"), "<s>", "</s>");
        assertThat(qwen.startsWithBos(qwen.render(List.of(new ChatMessage("user", "x", null))))).isFalse();
    }

    @Test
    void strftimeFollowsPythonDirectives() {
        var t = LocalDateTime.of(2025, 3, 4, 15, 7, 9).atZone(ZoneOffset.UTC);
        assertThat(Strftime.format("%d %b %Y", t)).isEqualTo("04 Mar 2025");
        assertThat(Strftime.format("%A %B %-d, %Y %I:%M:%S %p %%", t)).isEqualTo("Tuesday March 4, 2025 03:07:09 PM %");
        assertThat(Strftime.format("%Y-%m-%dT%H:%M:%S %j", t)).isEqualTo("2025-03-04T15:07:09 063");
    }

    @Test
    void developerRoleRendersAsSystem() {
        ChatTemplate chat = ChatTemplate.of("{% for m in messages %}{{ m.role }}={{ m.content }};{% endfor %}", "", "");
        assertThat(chat.render(List.of(new ChatMessage("developer", "rules", null), new ChatMessage("user", "hi", null))))
                .isEqualTo("system=rules;user=hi;");
    }

    private static List<ChatMessage> conversation(String name) throws IOException {
        JsonNode all = Json.MAPPER.readTree(resource("conversations.json"));
        List<ChatMessage> out = new ArrayList<>();
        for (JsonNode m : all.get(name)) out.add(new ChatMessage(m.get("role").asText(), m.get("content").asText(), null));
        return out;
    }

    private static String resource(String name) throws IOException {
        try (InputStream in = ChatTemplateTest.class.getResourceAsStream("/chat-templates/" + name)) {
            if (in == null) throw new IOException("missing test resource chat-templates/" + name);
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }
}
