package dev.kvserve.kvcache.evict;

import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.QueryRows;

/**
 * Per-sequence eviction state: the cache calls these hooks for every layer of every step, in this
 * order (see methods.md §0):
 * <ol>
 *   <li>{@link #onAppend} after the step's tokens were stored (new tokens in the last slots);</li>
 *   <li>{@link #beforeAttention} with the step's queries (HashEvict decides here);</li>
 *   <li>attention runs; it hides keys outside {@link #keyWindow()} and, if
 *       {@link #attentionWeightsFrom} asked for them, sums attention probabilities per key;</li>
 *   <li>{@link #afterAttention} with those sums (H2O, D2O accumulate and evict here);</li>
 *   <li>{@link #afterPrefill} once, on the step that completes the prompt (SnapKV, L2, D2O budgets).</li>
 * </ol>
 * Hooks evict with {@link LayerKv#evict} and merge with {@link LayerKv#rewrite}. After each hook
 * returns the cache compacts (so slot indices change between hooks; lanes follow their tokens).
 * Hooks for one sequence are never called concurrently; different sequences may run in parallel.
 */
public interface EvictionState {

    default void onAppend(LayerKv kv, KvRows rows) {}

    default void beforeAttention(LayerKv kv, QueryRows queries) {}

    /**
     * Lowest query position of this step whose attention probabilities should be summed into
     * {@link AttentionWeights} for {@link #afterAttention}; {@link Integer#MAX_VALUE} for none (the
     * default: computing them costs a second pass over the keys).
     */
    default int attentionWeightsFrom(int layer, int stepStart, int stepTokens, boolean endsPrompt) {
        return Integer.MAX_VALUE;
    }

    /** {@code weights} is null unless {@link #attentionWeightsFrom} asked for some queries. */
    default void afterAttention(LayerKv kv, QueryRows queries, AttentionWeights weights) {}

    default void afterPrefill(LayerKv kv) {}

    /**
     * Keys visible to a query, beyond causality: null for all (the default). StreamingLLM returns its
     * sinks and window; attention then also places keys at cache positions (see {@link KeyWindow}).
     */
    default KeyWindow keyWindow() {
        return null;
    }

    /** State for a forked sequence holding the same tokens. */
    EvictionState fork();

    /** Heap bytes of state kept outside lanes (for reports). */
    default long metadataBytes() {
        return 0;
    }
}
