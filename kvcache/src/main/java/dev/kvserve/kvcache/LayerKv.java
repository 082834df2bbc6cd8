package dev.kvserve.kvcache;

/**
 * One layer of one sequence's cache as an eviction rule, token selector or format state sees it.
 * Each KV head has its own table of slots (heads may keep different tokens: per-head eviction);
 * slot {@code s} lives in block {@code s / blockTokens()}. A slot is live when it holds a token;
 * appended tokens always take the last slots of every head's table, in position order.
 *
 * <p>Slot indices are stable for the duration of one hook call. When the hook returns the cache may
 * compact the table (free blocks whose slots are all dead, move live slots into holes): indices then
 * change, and per-slot lanes ({@link #slotFloat}, {@link #slotInt}) move with their token. Keep
 * per-token state in lanes, not in arrays indexed by slot.
 */
public interface LayerKv {

    int layer();

    KvGeometry geometry();

    int blockTokens();

    /** Slot indices of {@code kvHead} run from 0 to slots(kvHead)-1; some may be dead. */
    int slots(int kvHead);

    /** Live tokens of {@code kvHead}. */
    int liveTokens(int kvHead);

    boolean isLive(int kvHead, int slot);

    /** Original position of the token in {@code slot}, -1 if the slot is dead. */
    int position(int kvHead, int slot);

    /** Key as attention sees it: rotated at its position. dst[off .. off+headDim). */
    void readKey(int kvHead, int slot, float[] dst, int off);

    /** Key before RoPE (un-rotated when the format stores it rotated). */
    void readKeyPreRope(int kvHead, int slot, float[] dst, int off);

    void readValue(int kvHead, int slot, float[] dst, int off);

    /** Drops the token from this head. Its block returns to the pool once all its slots are dead. */
    void evict(int kvHead, int slot);

    /**
     * Replaces a live slot's key (post-RoPE, at the slot's position) and value, e.g. D2O merging an
     * evicted token into a retained one. The format re-encodes the slot (or its whole block when the
     * format is not per-token); a block shared with a forked sequence is copied first.
     */
    void rewrite(int kvHead, int slot, float[] key, int keyOff, float[] value, int valueOff);

    /** Per-slot float lane {@code lane} of this component (see {@code Lanes}); 0 for new tokens. */
    float slotFloat(int kvHead, int slot, int lane);

    void setSlotFloat(int kvHead, int slot, int lane, float value);

    /** Per-slot int lane; 0 for new tokens. */
    int slotInt(int kvHead, int slot, int lane);

    void setSlotInt(int kvHead, int slot, int lane, int value);
}
