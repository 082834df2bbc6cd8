package dev.kvserve.kvcache;

import dev.kvserve.kernels.RopeConfig;

/**
 * The shape of a model's KV cache: what a pool, a storage format or an eviction rule needs to
 * know about the model, and nothing else.
 *
 * @param layers      decoder layers
 * @param heads       query heads
 * @param kvHeads     key/value heads (grouped-query attention: heads is a multiple)
 * @param headDim     values per head
 * @param maxContext  longest sequence the model supports
 * @param rope        rotary embedding of keys (formats that store pre-RoPE keys apply it on read)
 */
public record KvGeometry(int layers, int heads, int kvHeads, int headDim, int maxContext, RopeConfig rope) {

    public KvGeometry {
        if (layers <= 0 || heads <= 0 || kvHeads <= 0 || headDim <= 0 || heads % kvHeads != 0) {
            throw new IllegalArgumentException("bad KV geometry: layers=" + layers + " heads=" + heads
                    + " kvHeads=" + kvHeads + " headDim=" + headDim);
        }
    }

    /** Floats of keys (or of values) one token has in one layer. */
    public int kvDim() {
        return kvHeads * headDim;
    }

    /** Query heads sharing one KV head. */
    public int groupSize() {
        return heads / kvHeads;
    }
}
