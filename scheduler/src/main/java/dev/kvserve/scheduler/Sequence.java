package dev.kvserve.scheduler;

import dev.kvserve.kvcache.SequenceKv;
import java.util.Arrays;

/**
 * One request as the scheduler sees it: its tokens (prompt, then generated), how many of them are
 * already in its KV cache, and where it stands.
 *
 * <pre>
 *   WAITING ──admit──▶ PREFILLING ──last chunk──▶ RUNNING ──stop/length/cancel──▶ FINISHED
 *      ▲                   │                         │
 *      └──────preempt──────┴─────────────────────────┘   (blocks freed; everything recomputed)
 *      └──────swap out─────┴─────────────────────────┘   (blocks moved to host/SSD; swapped in on readmission)
 * </pre>
 *
 * <p>The model needs every token but the newest in the cache to produce the next one, so a
 * sequence always has {@code pending() = tokens - computed} tokens to feed: the unprefilled part of
 * its prompt, or exactly one (the token sampled last) while it decodes. After a preemption
 * {@code computed} drops to 0 and prompt and generated tokens are prefilled again together.
 * Touched by the engine thread only.
 */
final class Sequence {

    enum State { WAITING, PREFILLING, RUNNING, FINISHED }

    final long id;
    /** Admission order; lower is older and has priority. */
    final long arrival;
    final String policy;
    final int promptLength;
    /** Engine-side output state (sampling, text, listener); null in scheduler-only tests. */
    final Generation generation;

    private int[] tokens;
    private int length;
    private int computed;
    private State state = State.WAITING;
    private SequenceKv kv;
    private int preemptions;
    /** Waiting with its cache moved to the lower tiers (swap preemption): computed tokens kept. */
    private boolean swapped;

    Sequence(long id, long arrival, int[] prompt, String policy, Generation generation) {
        if (prompt.length == 0) throw new IllegalArgumentException("a prompt needs at least one token");
        this.id = id;
        this.arrival = arrival;
        this.policy = policy;
        this.generation = generation;
        this.promptLength = prompt.length;
        this.tokens = Arrays.copyOf(prompt, prompt.length + 16);
        this.length = prompt.length;
    }

    State state() { return state; }

    /** Prompt plus generated tokens. */
    int length() { return length; }

    int generatedCount() { return length - promptLength; }

    /** Tokens whose keys and values are in the cache. */
    int computed() { return computed; }

    /** Tokens to feed before the next token can be sampled. */
    int pending() { return length - computed; }

    int token(int i) { return tokens[i]; }

    int[] tokens(int from, int to) { return Arrays.copyOfRange(tokens, from, to); }

    int[] generatedTokens() { return Arrays.copyOfRange(tokens, promptLength, length); }

    SequenceKv kv() { return kv; }

    int preemptions() { return preemptions; }

    boolean isFinished() { return state == State.FINISHED; }

    boolean isSwapped() { return swapped; }

    /** Appends a sampled token: it is pending until the next step feeds it. */
    void append(int token) {
        if (state != State.RUNNING && state != State.PREFILLING) throw new IllegalStateException(id + " is " + state);
        if (length == tokens.length) tokens = Arrays.copyOf(tokens, tokens.length * 2);
        tokens[length++] = token;
        state = State.RUNNING;
    }

    void admit(SequenceKv cache, int sharedPrefix) {
        if (state != State.WAITING) throw new IllegalStateException(id + " is " + state);
        this.kv = cache;
        this.computed = sharedPrefix;
        this.state = State.PREFILLING;
    }

    /** The step fed {@code n} more tokens into the cache. */
    void computed(int n) {
        if (n <= 0 || computed + n > length) throw new IllegalStateException("cannot advance " + id + " by " + n);
        computed += n;
    }

    /** Recompute preemption: give the blocks back, keep the tokens, start over later. */
    void preempt() {
        if (state != State.PREFILLING && state != State.RUNNING) throw new IllegalStateException(id + " is " + state);
        release();
        computed = 0;
        preemptions++;
        state = State.WAITING;
    }

    /** Swap preemption: the cache (already moved down by the pool) and every computed token are kept. */
    void swappedOut() {
        if (state != State.PREFILLING && state != State.RUNNING) throw new IllegalStateException(id + " is " + state);
        swapped = true;
        preemptions++;
        state = State.WAITING;
    }

    /** Readmitted after {@link #swappedOut}: continues where it stopped. */
    void resume() {
        if (!swapped || state != State.WAITING) throw new IllegalStateException(id + " is " + state + (swapped ? "" : ", not swapped"));
        swapped = false;
        state = generatedCount() > 0 && pending() == 1 ? State.RUNNING : State.PREFILLING;
    }

    /** A swapped cache that cannot come back whole (a lost block): recompute from scratch instead. */
    void dropSwapped() {
        if (!swapped) throw new IllegalStateException(id + " is not swapped");
        release();
        computed = 0;
        swapped = false;
    }

    void finish() {
        release();
        swapped = false;
        state = State.FINISHED;
    }

    private void release() {
        if (kv != null) {
            kv.close();
            kv = null;
        }
    }

    @Override
    public String toString() {
        return "Sequence[" + id + " " + state + " " + computed + "/" + length + "]";
    }
}
