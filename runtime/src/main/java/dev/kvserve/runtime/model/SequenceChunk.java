package dev.kvserve.runtime.model;

import dev.kvserve.kvcache.SequenceKv;

/**
 * Tokens of one sequence to run in a batched step. They are appended to {@code cache} at
 * positions {@code cache.length()} onwards. With {@code allLogits} the step returns the logits
 * of every token (perplexity, prompt logprobs), otherwise only of the last one (generation).
 */
public record SequenceChunk(SequenceKv cache, int[] tokens, boolean allLogits) {
    public SequenceChunk {
        if (tokens.length == 0) throw new IllegalArgumentException("a chunk needs at least one token");
    }
}
