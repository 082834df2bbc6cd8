package dev.kvserve.scheduler;

import java.util.List;
import java.util.Objects;

/**
 * One completion to generate: a prompt (text, or token ids when the caller tokenized it), how to
 * sample, when to stop, and which KV-cache compression policy its sequence uses.
 *
 * <pre>{@code
 * GenerationRequest req = GenerationRequest.builder("Once upon a time")
 *         .maxTokens(64).temperature(0.8f).seed(42).kvPolicy("int4:group=16").build();
 * }</pre>
 *
 * @param prompt           text to complete (ignored when promptTokens is non-null)
 * @param promptTokens     already tokenized prompt, BOS included if wanted; null to tokenize prompt
 * @param maxTokens        most tokens to generate (≥ 0)
 * @param temperature      0 for greedy
 * @param topK             0 disables
 * @param topP             1 disables
 * @param minP             0 disables
 * @param repetitionPenalty 1 disables
 * @param presencePenalty  0 disables
 * @param frequencyPenalty 0 disables
 * @param seed             sampling seed; null picks one at random
 * @param stop             strings that end generation; the text is cut before the first match
 * @param logprobs         how many top alternatives to report per token (0: none, -1: chosen only)
 * @param kvPolicy         compression policy spec, e.g. {@code "kvquant:bits=4+sink:sinks=4,window=128"}; null for the engine default
 * @param ignoreEos        keep generating past end-of-sequence tokens
 */
public record GenerationRequest(
        String prompt,
        int[] promptTokens,
        int maxTokens,
        float temperature,
        int topK,
        float topP,
        float minP,
        float repetitionPenalty,
        float presencePenalty,
        float frequencyPenalty,
        Long seed,
        List<String> stop,
        int logprobs,
        String kvPolicy,
        boolean ignoreEos) {

    public GenerationRequest {
        if (prompt == null && promptTokens == null) throw new IllegalArgumentException("a prompt is required");
        if (maxTokens < 0) throw new IllegalArgumentException("maxTokens must be >= 0, got " + maxTokens);
        stop = stop == null ? List.of() : List.copyOf(stop);
        promptTokens = promptTokens == null ? null : promptTokens.clone();
    }

    public static Builder builder(String prompt) {
        return new Builder().prompt(prompt);
    }

    public static Builder builder(int[] promptTokens) {
        return new Builder().promptTokens(promptTokens);
    }

    /** Fluent construction with the defaults of llama.cpp's server (greedy when temperature is 0). */
    public static final class Builder {
        private String prompt;
        private int[] promptTokens;
        private int maxTokens = 16;
        private float temperature = 1.0f;
        private int topK = 0;
        private float topP = 1.0f;
        private float minP = 0.0f;
        private float repetitionPenalty = 1.0f;
        private float presencePenalty = 0.0f;
        private float frequencyPenalty = 0.0f;
        private Long seed;
        private List<String> stop = List.of();
        private int logprobs;
        private String kvPolicy;
        private boolean ignoreEos;

        public Builder prompt(String v) { this.prompt = Objects.requireNonNull(v); return this; }
        public Builder promptTokens(int[] v) { this.promptTokens = v.clone(); return this; }
        public Builder maxTokens(int v) { this.maxTokens = v; return this; }
        public Builder temperature(float v) { this.temperature = v; return this; }
        public Builder greedy() { this.temperature = 0f; return this; }
        public Builder topK(int v) { this.topK = v; return this; }
        public Builder topP(float v) { this.topP = v; return this; }
        public Builder minP(float v) { this.minP = v; return this; }
        public Builder repetitionPenalty(float v) { this.repetitionPenalty = v; return this; }
        public Builder presencePenalty(float v) { this.presencePenalty = v; return this; }
        public Builder frequencyPenalty(float v) { this.frequencyPenalty = v; return this; }
        public Builder seed(long v) { this.seed = v; return this; }
        public Builder stop(List<String> v) { this.stop = v; return this; }
        public Builder logprobs(int v) { this.logprobs = v; return this; }
        public Builder kvPolicy(String v) { this.kvPolicy = v; return this; }
        public Builder ignoreEos(boolean v) { this.ignoreEos = v; return this; }

        public GenerationRequest build() {
            return new GenerationRequest(prompt, promptTokens, maxTokens, temperature, topK, topP, minP,
                    repetitionPenalty, presencePenalty, frequencyPenalty, seed, stop, logprobs, kvPolicy, ignoreEos);
        }
    }
}
