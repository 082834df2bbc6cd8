package dev.kvserve.runtime.model;

import dev.kvserve.kvcache.SequenceKv;

/**
 * Tokens of one sequence to run in a batched step. They are appended to {@code cache} at
 * positions {@code cache.length()} onwards. With {@code allLogits} the step returns the logits
 * of every token (perplexity, prompt logprobs), otherwise only of the last one (generation).
 * {@code endsPrompt} marks the last chunk of a prompt's prefill: policies with one-time post-prompt
 * decisions (SnapKV, budgets set from the prompt) act then.
 */
public record SequenceChunk(SequenceKv cache, int[] tokens, boolean allLogits, boolean endsPrompt) {
    public SequenceChunk {
        if (tokens.length == 0) throw new IllegalArgumentException("a chunk needs at least one token");
    }

    /** A chunk that does not mark the end of a prompt (decode steps, perplexity). */
    public SequenceChunk(SequenceKv cache, int[] tokens, boolean allLogits) {
        this(cache, tokens, allLogits, false);
    }
}
