package dev.kvserve.kvcache.tier;

/**
 * A copy of one block's bytes in a lower tier (host RAM or an SSD file). Owned by the block that
 * points to it: freed when the block's last reference goes, or when the block is written (the copy
 * is then stale).
 */
public interface StoredBlock {

    /** Bytes of the block (as stored in the pool). */
    long bytes();

    /** Name of the tier holding the copy now ({@code host} or {@code ssd}); it may move down later. */
    String tier();

    /** Releases the copy's memory or file extent. Idempotent. */
    void free();
}
