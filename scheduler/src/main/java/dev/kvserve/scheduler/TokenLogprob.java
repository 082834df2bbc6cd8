package dev.kvserve.scheduler;

import java.util.List;

/**
 * Log-probability of a generated token under the model's distribution at that step, with the most
 * likely alternatives when they were asked for.
 *
 * @param token   the chosen token id
 * @param text    its text (the token's piece as the tokenizer decodes it alone)
 * @param logprob natural log of its probability
 * @param top     the requested number of most likely tokens, best first (empty for "chosen only")
 */
public record TokenLogprob(int token, String text, float logprob, List<Candidate> top) {

    public TokenLogprob {
        top = List.copyOf(top);
    }

    /** One of the most likely tokens at a step. */
    public record Candidate(int token, String text, float logprob) {}
}
