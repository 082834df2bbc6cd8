package dev.kvserve.runtime.sampling;

/**
 * A chosen token with log-probabilities from the model's distribution after penalties, before
 * temperature and truncation (see {@link Sampler}).
 *
 * @param topTokens    the most likely tokens, best first (length = requested top-N, or fewer if the
 *                     vocabulary has fewer finite logits)
 * @param topLogprobs  their log-probabilities, same order
 */
public record SampledToken(int token, float logprob, int[] topTokens, float[] topLogprobs) {
}
