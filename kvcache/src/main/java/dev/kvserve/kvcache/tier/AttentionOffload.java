package dev.kvserve.kvcache.tier;

import dev.kvserve.kvcache.RopeTable;
import dev.kvserve.kvcache.format.BlockCodec;
import dev.kvserve.kvcache.format.FormatState;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * Attention computed where the KV blocks are stored (InstInfer-style computational storage, or a
 * remote KV server): the runtime sends the step's queries and the list of stored blocks, the device
 * reads the blocks over its internal bandwidth and returns only a {@link PartialAttention} per
 * request, which the runtime merges with its own partial over the resident blocks.
 */
public interface AttentionOffload {

    /**
     * One stored block to attend over.
     *
     * @param copy      where the block's bytes are
     * @param codec     how they are encoded (the device implements the same formats)
     * @param positions position per slot (-1 = dead), for the causal mask
     * @param chosen    per slot, whether the step's selection includes it (null = every slot)
     */
    record BlockRef(StoredBlock copy, BlockCodec codec, int[] positions, boolean[] chosen) {}

    /**
     * @param layer          layer of the blocks
     * @param kvHead         KV head of the blocks
     * @param headDim        head size
     * @param queries        [queries][headDim], RoPE applied and already scaled by 1/sqrt(headDim)
     * @param queryPositions position per query (token t sees slots with position <= t)
     * @param formatState    the sequence's format state (side tables some formats decode with)
     * @param rope           RoPE tables (formats storing pre-RoPE keys rotate them at their position)
     * @param blocks         the blocks, in any order
     */
    record Request(int layer, int kvHead, int headDim, float[] queries, int[] queryPositions, FormatState formatState,
                   RopeTable rope, List<BlockRef> blocks) {

        public int queryCount() {
            return queryPositions.length;
        }
    }

    /** Starts the partial attention; the future fails with {@link dev.kvserve.kvcache.BlockLostException} on a corrupt block. */
    CompletableFuture<PartialAttention> attend(Request request);
}
