package dev.kvserve.scheduler;

/**
 * Chooses one sequence's tokens: its own sampler state (seeded RNG, penalty history), so requests
 * never influence each other. Used by the engine thread only.
 */
interface TokenPicker {

    /** The next token from this step's logits (which the picker may modify). */
    int pick(float[] logits);

    /** Log-probability info of the token {@link #pick} returned last, or null when the request asked for none. */
    TokenLogprob lastLogprob();

    /** Makes a request's picker; throws IllegalArgumentException for bad sampling parameters. */
    @FunctionalInterface
    interface Factory {
        TokenPicker create(GenerationRequest request, long seed, int[] prompt);
    }
}
