package dev.kvserve.runtime.sampling;

/**
 * How one sequence picks its next token.
 *
 * @param temperature       0 = greedy (argmax); otherwise logits are divided by it after truncation
 * @param topK              keep the k most likely tokens; 0 (or -1) = off
 * @param topP              keep the smallest most-likely set whose probability reaches p; 1 = off
 * @param minP              drop tokens less likely than {@code minP × p(best)}; 0 = off
 * @param repetitionPenalty llama.cpp {@code repeat_penalty}: seen tokens' positive logits are divided
 *                          by it, negative ones multiplied; 1 = off
 * @param presencePenalty   subtracted once from every seen token's logit (OpenAI range -2..2)
 * @param frequencyPenalty  subtracted once per occurrence (OpenAI range -2..2)
 * @param penaltyLastN      how many most recent history tokens the penalties look at (llama.cpp
 *                          {@code repeat_last_n}); -1 = the whole history, 0 = penalties off
 * @param seed              random seed; the same seed and inputs give the same tokens; null = random
 */
public record SamplingParams(float temperature, int topK, float topP, float minP,
                             float repetitionPenalty, float presencePenalty, float frequencyPenalty,
                             int penaltyLastN, Long seed) {

    public static final int DEFAULT_PENALTY_LAST_N = 64;

    public SamplingParams {
        if (!Float.isFinite(temperature) || temperature < 0) {
            throw new IllegalArgumentException("temperature must be a finite number >= 0 (0 = greedy), got " + temperature);
        }
        if (topK < -1) {
            throw new IllegalArgumentException("topK must be >= 0 (0 or -1 = no top-k), got " + topK);
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new IllegalArgumentException("topP must be in (0, 1] (1 = no top-p), got " + topP);
        }
        if (!(minP >= 0 && minP <= 1)) {
            throw new IllegalArgumentException("minP must be in [0, 1] (0 = no min-p), got " + minP);
        }
        if (!Float.isFinite(repetitionPenalty) || repetitionPenalty <= 0) {
            throw new IllegalArgumentException("repetitionPenalty must be a finite number > 0 (1 = none), got " + repetitionPenalty);
        }
        if (!(presencePenalty >= -2 && presencePenalty <= 2)) {
            throw new IllegalArgumentException("presencePenalty must be in [-2, 2], got " + presencePenalty);
        }
        if (!(frequencyPenalty >= -2 && frequencyPenalty <= 2)) {
            throw new IllegalArgumentException("frequencyPenalty must be in [-2, 2], got " + frequencyPenalty);
        }
        if (penaltyLastN < -1) {
            throw new IllegalArgumentException("penaltyLastN must be >= -1 (-1 = whole history, 0 = off), got " + penaltyLastN);
        }
    }

    /** Always the most likely token (after penalties, which are off here). */
    public static SamplingParams greedy() {
        return new SamplingParams(0f, 0, 1f, 0f, 1f, 0f, 0f, DEFAULT_PENALTY_LAST_N, null);
    }

    /** Plain sampling from the model's distribution (OpenAI defaults: temperature 1, no truncation). */
    public static SamplingParams defaults() {
        return new SamplingParams(1f, 0, 1f, 0f, 1f, 0f, 0f, DEFAULT_PENALTY_LAST_N, null);
    }

    public boolean isGreedy() {
        return temperature == 0f;
    }

    public boolean hasPenalties() {
        return penaltyLastN != 0 && (repetitionPenalty != 1f || presencePenalty != 0f || frequencyPenalty != 0f);
    }

    public SamplingParams withTemperature(float value) {
        return new SamplingParams(value, topK, topP, minP, repetitionPenalty, presencePenalty, frequencyPenalty, penaltyLastN, seed);
    }

    public SamplingParams withTopK(int value) {
        return new SamplingParams(temperature, value, topP, minP, repetitionPenalty, presencePenalty, frequencyPenalty, penaltyLastN, seed);
    }

    public SamplingParams withTopP(float value) {
        return new SamplingParams(temperature, topK, value, minP, repetitionPenalty, presencePenalty, frequencyPenalty, penaltyLastN, seed);
    }

    public SamplingParams withMinP(float value) {
        return new SamplingParams(temperature, topK, topP, value, repetitionPenalty, presencePenalty, frequencyPenalty, penaltyLastN, seed);
    }

    public SamplingParams withRepetitionPenalty(float value) {
        return new SamplingParams(temperature, topK, topP, minP, value, presencePenalty, frequencyPenalty, penaltyLastN, seed);
    }

    public SamplingParams withPresencePenalty(float value) {
        return new SamplingParams(temperature, topK, topP, minP, repetitionPenalty, value, frequencyPenalty, penaltyLastN, seed);
    }

    public SamplingParams withFrequencyPenalty(float value) {
        return new SamplingParams(temperature, topK, topP, minP, repetitionPenalty, presencePenalty, value, penaltyLastN, seed);
    }

    public SamplingParams withPenaltyLastN(int value) {
        return new SamplingParams(temperature, topK, topP, minP, repetitionPenalty, presencePenalty, frequencyPenalty, value, seed);
    }

    public SamplingParams withSeed(Long value) {
        return new SamplingParams(temperature, topK, topP, minP, repetitionPenalty, presencePenalty, frequencyPenalty, penaltyLastN, value);
    }
}
