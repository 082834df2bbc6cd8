package dev.kvserve.http.openai;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.ArrayList;
import java.util.List;

/**
 * A parsed {@code POST /v1/completions} body.
 *
 * @param prompts  one entry per prompt: OpenAI accepts a string, an array of strings, an array of
 *                 token ids, or an array of token-id arrays
 * @param echo     prepend the prompt to the returned text
 * @param logprobs null for none, k for the chosen token's logprob plus the k most likely alternatives
 */
public record CompletionRequest(List<Prompt> prompts, SamplingOptions options, boolean echo, Integer logprobs) {

    public static final int MAX_LOGPROBS = 20;
    public static final int MAX_PROMPTS = 64;

    /** Exactly one of {@code text} and {@code tokens} is non-null. */
    public record Prompt(String text, int[] tokens) {}

    public CompletionRequest {
        prompts = List.copyOf(prompts);
    }

    public static CompletionRequest parse(byte[] body) {
        return parse(Json.parseObject(body));
    }

    public static CompletionRequest parse(ObjectNode root) {
        Fields f = new Fields(root);
        List<Prompt> prompts = prompts(f.get("prompt"));
        boolean echo = f.bool("echo", false);
        Integer logprobs = f.integer("logprobs", null, 0, MAX_LOGPROBS);
        f.unsupported("suffix", "insertion (suffix) is not implemented");
        SamplingOptions options = SamplingOptions.parse(f, "max_tokens", echo ? 0 : 1);
        if (options.maxTokens() == null) {
            // The legacy endpoint's documented default.
            options = withMaxTokens(options, 16);
        }
        Integer bestOf = f.integer("best_of", null, 1, SamplingOptions.MAX_N);
        if (bestOf != null && bestOf != options.n()) {
            throw ApiException.invalid("best_of", "'best_of' different from 'n' is not supported by this server");
        }
        if (echo && logprobs != null) {
            throw ApiException.invalid("echo", "'echo' together with 'logprobs' is not supported: prompt logprobs are not computed");
        }
        if (prompts.size() * (long) options.n() > MAX_PROMPTS) {
            throw ApiException.invalid("n", "at most " + MAX_PROMPTS + " sequences per request (prompts x n), got "
                    + prompts.size() * (long) options.n());
        }
        return new CompletionRequest(prompts, options, echo, logprobs);
    }

    static SamplingOptions withMaxTokens(SamplingOptions o, int maxTokens) {
        return new SamplingOptions(o.model(), maxTokens, o.temperature(), o.topP(), o.topK(), o.minP(),
                o.presencePenalty(), o.frequencyPenalty(), o.repetitionPenalty(), o.seed(), o.stop(), o.n(),
                o.kvPolicy(), o.ignoreEos(), o.stream(), o.includeUsage());
    }

    private static List<Prompt> prompts(JsonNode prompt) {
        if (prompt == null) throw ApiException.invalid("prompt", "'prompt' is required");
        List<Prompt> out = new ArrayList<>();
        if (prompt.isTextual()) {
            out.add(new Prompt(prompt.textValue(), null));
        } else if (prompt.isArray()) {
            if (prompt.isEmpty()) throw ApiException.invalid("prompt", "'prompt' must not be an empty array");
            JsonNode first = prompt.get(0);
            if (first.isIntegralNumber() || first.isNumber()) {
                out.add(new Prompt(null, tokenIds("prompt", prompt)));
            } else {
                for (int i = 0; i < prompt.size(); i++) {
                    JsonNode item = prompt.get(i);
                    String name = "prompt[" + i + "]";
                    if (item.isTextual()) {
                        out.add(new Prompt(item.textValue(), null));
                    } else if (item.isArray()) {
                        if (item.isEmpty()) throw ApiException.invalid("prompt", "'" + name + "' must not be an empty token array");
                        out.add(new Prompt(null, tokenIds(name, item)));
                    } else {
                        throw Fields.wrongType(name, "a string or an array of token ids", item);
                    }
                }
            }
            if (out.size() > MAX_PROMPTS) {
                throw ApiException.invalid("prompt", "at most " + MAX_PROMPTS + " prompts per request, got " + out.size());
            }
        } else {
            throw Fields.wrongType("prompt", "a string, an array of strings or an array of token ids", prompt);
        }
        return out;
    }

    private static int[] tokenIds(String name, JsonNode array) {
        int[] ids = new int[array.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode item = array.get(i);
            long id = Fields.integral(name + "[" + i + "]", item);
            if (id < 0 || id > Integer.MAX_VALUE) {
                throw ApiException.invalid("prompt", "token id " + id + " at " + name + "[" + i + "] is out of range");
            }
            ids[i] = (int) id;
        }
        return ids;
    }
}
