package dev.kvserve.kvcache.format;

import java.lang.foreign.MemorySegment;

/**
 * Pool memory a format or eviction rule keeps outside blocks, counted in the pool's byte budget and in
 * the owning sequence's {@code bytesHeld()}. Freed automatically when the sequence closes.
 */
public interface SideMemory {

    /** Zeroed segment of {@code bytes}; throws {@link dev.kvserve.kvcache.KvBudgetExceededException}. */
    MemorySegment allocate(long bytes);

    /** Returns a segment obtained from {@link #allocate}. */
    void free(MemorySegment segment);

    /** Bytes currently allocated through this object. */
    long bytes();
}
