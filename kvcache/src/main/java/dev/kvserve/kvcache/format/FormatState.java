package dev.kvserve.kvcache.format;

import dev.kvserve.kvcache.LayerKv;

/**
 * What a format keeps per sequence beyond its blocks. Most formats keep nothing ({@link #NONE}).
 * Examples: AQUA-KV's transient reconstruction of the previous layer (rebuilt in
 * {@link #beforeAttention}), a KVQuant variant with uncapped outliers in {@link SideMemory}.
 * Reached from codecs through {@link BlockContext#formatState()}.
 */
public interface FormatState {

    FormatState NONE = new FormatState() {
        @Override
        public FormatState fork(SideMemory side) {
            return this;
        }
    };

    /** Called for each layer of a step after the step's tokens were stored, before attention reads. */
    default void beforeAttention(int layer, LayerKv kv) {}

    /** State for a forked sequence (same cached tokens); side memory must be copied into {@code side}. */
    FormatState fork(SideMemory side);

    /** Called once when the sequence closes (side memory is freed by the cache anyway). */
    default void close() {}
}
