package dev.kvserve.http.openai;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kvserve.scheduler.TokenLogprob;

import java.util.List;
import java.util.function.IntFunction;

/**
 * The JSON bodies of OpenAI's completion APIs, field for field and in the order OpenAI writes them,
 * so that stock clients (openai-python, LangChain, vLLM's benchmark) parse them unchanged.
 */
public final class OpenAiFormat {

    public static final String CHAT_OBJECT = "chat.completion";
    public static final String CHAT_CHUNK_OBJECT = "chat.completion.chunk";
    public static final String TEXT_OBJECT = "text_completion";

    /** The fields every response and chunk of one request shares. */
    public record Envelope(String id, long created, String model, String systemFingerprint) {}

    private OpenAiFormat() {}

    public static ObjectNode usage(int promptTokens, int completionTokens) {
        ObjectNode usage = Json.MAPPER.createObjectNode();
        usage.put("prompt_tokens", promptTokens);
        usage.put("completion_tokens", completionTokens);
        usage.put("total_tokens", promptTokens + completionTokens);
        return usage;
    }

    public static ObjectNode model(String id, long created, String ownedBy, int maxModelLen) {
        ObjectNode model = Json.MAPPER.createObjectNode();
        model.put("id", id);
        model.put("object", "model");
        model.put("created", created);
        model.put("owned_by", ownedBy);
        // vLLM's extension: clients use it to size prompts.
        model.put("max_model_len", maxModelLen);
        return model;
    }

    public static ObjectNode modelList(ObjectNode... models) {
        ObjectNode list = Json.MAPPER.createObjectNode();
        list.put("object", "list");
        ArrayNode data = list.putArray("data");
        for (ObjectNode m : models) data.add(m);
        return list;
    }

    // ---------------------------------------------------------------- chat

    public static ObjectNode chatCompletion(Envelope env, List<ObjectNode> choices, ObjectNode usage) {
        ObjectNode root = envelope(env, CHAT_OBJECT);
        root.putArray("choices").addAll(choices);
        root.set("usage", usage);
        return root;
    }

    public static ObjectNode chatChoice(int index, String content, ObjectNode logprobs, String finishReason) {
        ObjectNode choice = Json.MAPPER.createObjectNode();
        choice.put("index", index);
        ObjectNode message = choice.putObject("message");
        message.put("role", "assistant");
        message.put("content", content);
        message.putNull("refusal");
        choice.set("logprobs", logprobs);
        choice.put("finish_reason", finishReason);
        return choice;
    }

    /**
     * A streamed chat chunk. With {@code usageField}, the chunk carries {@code "usage": null} as OpenAI
     * sends on every chunk but the last when {@code stream_options.include_usage} is set.
     */
    public static ObjectNode chatChunk(Envelope env, List<ObjectNode> choices, boolean usageField) {
        ObjectNode root = envelope(env, CHAT_CHUNK_OBJECT);
        root.putArray("choices").addAll(choices);
        if (usageField) root.putNull("usage");
        return root;
    }

    /** {@code role} is set on a choice's first chunk only; {@code content} null leaves the delta empty. */
    public static ObjectNode chatChunkChoice(int index, String role, String content, ObjectNode logprobs, String finishReason) {
        ObjectNode choice = Json.MAPPER.createObjectNode();
        choice.put("index", index);
        ObjectNode delta = choice.putObject("delta");
        if (role != null) delta.put("role", role);
        if (content != null) delta.put("content", content);
        choice.set("logprobs", logprobs);
        choice.put("finish_reason", finishReason);
        return choice;
    }

    /** {@code {"content": [{token, logprob, bytes, top_logprobs: [...]}], "refusal": null}}. */
    public static ObjectNode chatLogprobs(List<TokenLogprob> tokens, IntFunction<byte[]> tokenBytes) {
        ObjectNode root = Json.MAPPER.createObjectNode();
        ArrayNode content = root.putArray("content");
        for (TokenLogprob t : tokens) {
            ObjectNode entry = content.addObject();
            entry.put("token", t.text());
            entry.put("logprob", finite(t.logprob()));
            bytes(entry.putArray("bytes"), tokenBytes.apply(t.token()));
            ArrayNode top = entry.putArray("top_logprobs");
            for (TokenLogprob.Candidate c : t.top()) {
                ObjectNode alt = top.addObject();
                alt.put("token", c.text());
                alt.put("logprob", finite(c.logprob()));
                bytes(alt.putArray("bytes"), tokenBytes.apply(c.token()));
            }
        }
        root.putNull("refusal");
        return root;
    }

    // ---------------------------------------------------------------- completions

    public static ObjectNode textCompletion(Envelope env, List<ObjectNode> choices, ObjectNode usage) {
        ObjectNode root = envelope(env, TEXT_OBJECT);
        root.putArray("choices").addAll(choices);
        root.set("usage", usage);
        return root;
    }

    /** Streamed completion chunks have the same object name and choice shape as the whole response. */
    public static ObjectNode textChunk(Envelope env, List<ObjectNode> choices, boolean usageField) {
        ObjectNode root = envelope(env, TEXT_OBJECT);
        root.putArray("choices").addAll(choices);
        if (usageField) root.putNull("usage");
        return root;
    }

    public static ObjectNode textChoice(int index, String text, ObjectNode logprobs, String finishReason) {
        ObjectNode choice = Json.MAPPER.createObjectNode();
        choice.put("index", index);
        choice.put("text", text);
        choice.set("logprobs", logprobs);
        choice.put("finish_reason", finishReason);
        return choice;
    }

    /**
     * The legacy logprobs object: parallel arrays, with each position's alternatives as a map from
     * token text to logprob that always includes the chosen token (as OpenAI's did).
     *
     * @param firstOffset where the first token's text starts in the choice's {@code text}
     */
    public static ObjectNode completionLogprobs(List<TokenLogprob> tokens, int firstOffset) {
        ObjectNode root = Json.MAPPER.createObjectNode();
        ArrayNode tokenTexts = root.putArray("tokens");
        ArrayNode tokenLogprobs = root.putArray("token_logprobs");
        ArrayNode top = root.putArray("top_logprobs");
        ArrayNode offsets = root.putArray("text_offset");
        int offset = firstOffset;
        for (TokenLogprob t : tokens) {
            tokenTexts.add(t.text());
            tokenLogprobs.add(finite(t.logprob()));
            ObjectNode alternatives = top.addObject();
            for (TokenLogprob.Candidate c : t.top()) {
                if (!alternatives.has(c.text())) alternatives.put(c.text(), finite(c.logprob()));
            }
            if (!alternatives.has(t.text())) alternatives.put(t.text(), finite(t.logprob()));
            offsets.add(offset);
            offset += t.text().length();
        }
        return root;
    }

    /** The chunk {@code stream_options.include_usage} adds before [DONE]: no choices, the request's usage. */
    public static ObjectNode usageChunk(Envelope env, String object, ObjectNode usage) {
        ObjectNode root = envelope(env, object);
        root.putArray("choices");
        root.set("usage", usage);
        return root;
    }

    private static ObjectNode envelope(Envelope env, String object) {
        ObjectNode root = Json.MAPPER.createObjectNode();
        root.put("id", env.id());
        root.put("object", object);
        root.put("created", env.created());
        root.put("model", env.model());
        root.put("system_fingerprint", env.systemFingerprint());
        return root;
    }

    /** JSON has no -Infinity; OpenAI reports impossible tokens as -9999.0. */
    private static float finite(float logprob) {
        return Float.isFinite(logprob) ? logprob : -9999.0f;
    }

    private static void bytes(ArrayNode out, byte[] bytes) {
        for (byte b : bytes) out.add(b & 0xff);
    }
}
