package dev.kvserve.scheduler;

/** Why a generation ended. */
public enum FinishReason {
    /** An end-of-generation token was sampled or a stop string matched. */
    STOP,
    /** {@code maxTokens} were generated, the model's context is full, or the KV budget cannot hold the sequence even alone. */
    LENGTH,
    /** The caller cancelled (client gone) or the engine closed. */
    CANCELLED;

    /** The lower-case name OpenAI's API uses ({@code "stop"}, {@code "length"}, {@code "cancelled"}). */
    public String wireName() {
        return name().toLowerCase(java.util.Locale.ROOT);
    }
}
