package dev.kvserve.scheduler;

/**
 * Chooses one sequence's tokens: its own sampler state (seeded RNG, penalty history), so requests
 * never influence each other. Used by the engine thread only.
 */
interface TokenPicker {

    /** The next token from this step's logits; {@code sequence} holds the prompt and the tokens generated so far. */
    int pick(float[] logits, Sequence sequence);

    /** Log-probability info of the token {@link #pick} returned last, or null when the request asked for none. */
    TokenLogprob lastLogprob();

    /** Makes a request's picker; throws IllegalArgumentException for bad sampling parameters. */
    @FunctionalInterface
    interface Factory {
        TokenPicker create(GenerationRequest request, long seed, int[] prompt);
    }
}
