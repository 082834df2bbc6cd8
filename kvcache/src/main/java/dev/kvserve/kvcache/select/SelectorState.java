package dev.kvserve.kvcache.select;

import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.QueryRows;

/**
 * Per-sequence state of a {@link TokenSelector}. Hooks run after the eviction rule's hooks of the
 * same point; the same compaction rules as for eviction apply (see {@link LayerKv}).
 */
public interface SelectorState {

    /** After the step's tokens were stored (Quest updates page min/max, ClusterKV assigns clusters). */
    default void onAppend(LayerKv kv, KvRows rows) {}

    /** Once, after the step that completes the prompt (ClusterKV clusters the prompt keys). */
    default void afterPrefill(LayerKv kv) {}

    /**
     * Tokens this step's queries attend to, or null for all (e.g. during prefill or in skipped
     * layers). The selection applies to every query row of the step; causality still holds.
     */
    Selection select(LayerKv kv, QueryRows queries);

    SelectorState fork();

    default long metadataBytes() {
        return 0;
    }
}
