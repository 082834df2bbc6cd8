package dev.kvserve.http.openai;

import java.util.List;

/**
 * What the two completion endpoints share: sampling, stopping, the number of choices, streaming, and
 * the non-standard {@code kv_policy} and {@code ignore_eos}. Values are already range-checked.
 *
 * @param model            requested model id, null when the client left it out
 * @param maxTokens        tokens to generate per choice; null means "up to the context limit" (chat)
 * @param topK             0 disables (the API's -1 is mapped to 0)
 * @param seed             null lets the engine pick one
 * @param n                choices per prompt
 * @param kvPolicy         KV compression spec for this request's sequences, null for the server default
 * @param ignoreEos        keep generating past end-of-sequence (vLLM's extension, used by benchmarks)
 * @param stream           answer with server-sent events
 * @param includeUsage     {@code stream_options.include_usage}: a final chunk carrying usage
 */
public record SamplingOptions(
        String model,
        Integer maxTokens,
        double temperature,
        double topP,
        int topK,
        double minP,
        double presencePenalty,
        double frequencyPenalty,
        double repetitionPenalty,
        Long seed,
        List<String> stop,
        int n,
        String kvPolicy,
        boolean ignoreEos,
        boolean stream,
        boolean includeUsage) {

    public static final int MAX_N = 16;
    public static final int MAX_STOP = 16;

    public SamplingOptions {
        stop = List.copyOf(stop);
    }

    /** Longest {@code kv_policy} accepted (the longest built-in spec, every parameter written, is under 300). */
    static final int MAX_KV_POLICY_CHARS = 512;

    static SamplingOptions parse(Fields f, String maxTokensField, int minMaxTokens) {
        String model = f.string("model");
        Integer maxTokens = f.integer(maxTokensField, null, minMaxTokens, Integer.MAX_VALUE);
        double temperature = f.number("temperature", 1.0, 0.0, 2.0, false);
        double topP = f.number("top_p", 1.0, 0.0, 1.0, true);
        int topK = f.integer("top_k", 0, -1, Integer.MAX_VALUE);
        double minP = f.number("min_p", 0.0, 0.0, 1.0, false);
        double presence = f.number("presence_penalty", 0.0, -2.0, 2.0, false);
        double frequency = f.number("frequency_penalty", 0.0, -2.0, 2.0, false);
        double repetition = f.number("repetition_penalty", 1.0, 0.0, 2.0, true);
        Long seed = f.longValue("seed");
        List<String> stop = f.stringOrStrings("stop", MAX_STOP);
        int n = f.integer("n", 1, 1, MAX_N);
        String kvPolicy = f.string("kv_policy");
        if (kvPolicy != null && kvPolicy.isBlank()) throw ApiException.invalid("kv_policy", "'kv_policy' must not be blank");
        // Specs are short; a long one would only come back whole in the parser's messages.
        if (kvPolicy != null && kvPolicy.length() > MAX_KV_POLICY_CHARS) {
            throw ApiException.invalid("kv_policy", "'kv_policy' has " + kvPolicy.length() + " characters; at most "
                    + MAX_KV_POLICY_CHARS + " are accepted");
        }
        boolean ignoreEos = f.bool("ignore_eos", false);
        boolean stream = f.bool("stream", false);
        boolean includeUsage = false;
        if (f.has("stream_options")) {
            if (!stream) {
                throw ApiException.invalid("stream_options", "'stream_options' is only allowed when 'stream' is true");
            }
            if (!f.get("stream_options").isObject()) {
                throw Fields.wrongType("stream_options", "an object", f.get("stream_options"));
            }
            includeUsage = new Fields((com.fasterxml.jackson.databind.node.ObjectNode) f.get("stream_options"))
                    .bool("include_usage", false);
        }
        f.unsupported("logit_bias", null);
        return new SamplingOptions(model, maxTokens, temperature, topP, topK < 0 ? 0 : topK, minP, presence, frequency,
                repetition, seed, stop, n, kvPolicy, ignoreEos, stream, includeUsage);
    }
}
