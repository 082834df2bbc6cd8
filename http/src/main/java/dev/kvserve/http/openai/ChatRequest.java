package dev.kvserve.http.openai;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * A parsed {@code POST /v1/chat/completions} body.
 *
 * @param logprobs    report the chosen tokens' logprobs
 * @param topLogprobs alternatives per position (0..20), only with {@code logprobs}
 * @param maxTokensParam which field gave the token limit ({@code max_completion_tokens} or the older {@code max_tokens}), for error messages
 */
public record ChatRequest(List<ChatMessage> messages, SamplingOptions options, boolean logprobs, int topLogprobs,
                          String maxTokensParam) {

    public static final int MAX_TOP_LOGPROBS = 20;
    private static final Set<String> ROLES = Set.of("system", "developer", "user", "assistant", "tool");

    /** One turn; {@code content} is the concatenation of its text parts. */
    public record ChatMessage(String role, String content, String name) {}

    public ChatRequest {
        messages = List.copyOf(messages);
    }

    public static ChatRequest parse(byte[] body) {
        return parse(Json.parseObject(body));
    }

    public static ChatRequest parse(ObjectNode root) {
        Fields f = new Fields(root);
        List<ChatMessage> messages = messages(f.get("messages"));
        String maxField = f.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
        SamplingOptions options = SamplingOptions.parse(f, maxField, 1);
        boolean logprobs = f.bool("logprobs", false);
        Integer top = f.integer("top_logprobs", null, 0, MAX_TOP_LOGPROBS);
        if (top != null && top > 0 && !logprobs) {
            throw ApiException.invalid("top_logprobs", "'top_logprobs' requires 'logprobs' to be true");
        }
        f.unsupported("tools", "tool calling is not implemented");
        f.unsupported("functions", "function calling is not implemented");
        JsonNode toolChoice = f.get("tool_choice");
        if (toolChoice != null && !(toolChoice.isTextual() && toolChoice.textValue().equals("none"))) {
            throw ApiException.invalid("tool_choice", "'tool_choice' is not supported by this server: tool calling is not implemented");
        }
        f.unsupported("function_call", "function calling is not implemented");
        JsonNode format = f.get("response_format");
        if (format != null) {
            if (!format.isObject()) throw Fields.wrongType("response_format", "an object", format);
            JsonNode type = format.get("type");
            if (type == null || !type.isTextual() || !type.textValue().equals("text")) {
                throw ApiException.invalid("response_format", "only response_format {\"type\": \"text\"} is supported");
            }
        }
        return new ChatRequest(messages, options, logprobs, top == null ? 0 : top, maxField);
    }

    private static List<ChatMessage> messages(JsonNode messages) {
        if (messages == null) throw ApiException.invalid("messages", "'messages' is required");
        if (!messages.isArray()) throw Fields.wrongType("messages", "an array", messages);
        if (messages.isEmpty()) throw ApiException.invalid("messages", "'messages' must contain at least one message");
        List<ChatMessage> out = new ArrayList<>(messages.size());
        for (int i = 0; i < messages.size(); i++) {
            String at = "messages[" + i + "]";
            JsonNode m = messages.get(i);
            if (!m.isObject()) throw Fields.wrongType(at, "an object", m);
            Fields mf = new Fields((ObjectNode) m);
            String role = mf.string("role");
            if (role == null) throw ApiException.invalid(at + ".role", "'" + at + ".role' is required");
            if (!ROLES.contains(role)) {
                throw ApiException.invalid(at + ".role", "'" + at + ".role' must be one of system, developer, user, assistant, tool; got '" + role + "'");
            }
            String content = content(at + ".content", mf.get("content"), role);
            out.add(new ChatMessage(role, content, mf.string("name")));
        }
        return out;
    }

    private static String content(String at, JsonNode content, String role) {
        if (content == null) {
            // An assistant turn that only called tools has no content; any other turn must say something.
            if (role.equals("assistant")) return "";
            throw ApiException.invalid(at, "'" + at + "' is required for role '" + role + "'");
        }
        if (content.isTextual()) return content.textValue();
        if (!content.isArray()) throw Fields.wrongType(at, "a string or an array of content parts", content);
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < content.size(); i++) {
            String partAt = at + "[" + i + "]";
            JsonNode part = content.get(i);
            if (!part.isObject()) throw Fields.wrongType(partAt, "an object", part);
            Fields pf = new Fields((ObjectNode) part);
            String type = pf.string("type");
            if (!"text".equals(type)) {
                throw ApiException.invalid(partAt + ".type", "only content parts of type 'text' are supported, got "
                        + (type == null ? "none" : "'" + type + "'"));
            }
            String t = pf.string("text");
            if (t == null) throw ApiException.invalid(partAt + ".text", "'" + partAt + ".text' is required");
            // Parts are joined as vLLM joins them, one per line.
            if (i > 0) text.append('\n');
            text.append(t);
        }
        return text.toString();
    }
}
