package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.format.SideMemory;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * A growable array of fixed-width elements in budget-counted pool memory ({@link SideMemory}),
 * allocated in small fixed chunks so that growing never copies and the slack is at most one chunk.
 * New elements read as zero. Whole chunks below an index can be given back ({@link #dropBelow}) when
 * the array is used as a queue.
 */
final class SideArray {

    static final int CHUNK_ELEMENTS = 128;
    private final SideMemory side;
    private final int elementBytes;
    private final List<MemorySegment> chunks = new ArrayList<>();
    /** Index of the first element of chunks.get(0). */
    private long base;

    SideArray(SideMemory side, int elementBytes) {
        this.side = side;
        this.elementBytes = elementBytes;
    }

    private MemorySegment chunk(long index, boolean grow) {
        if (grow && chunks.isEmpty()) base = Math.max(base, index / CHUNK_ELEMENTS * CHUNK_ELEMENTS);
        if (index < base) {
            if (!grow) return null;
            throw new IndexOutOfBoundsException("element " + index + " was already given back");
        }
        long c = (index - base) / CHUNK_ELEMENTS;
        while (grow && c >= chunks.size()) chunks.add(side.allocate((long) CHUNK_ELEMENTS * elementBytes));
        return c < chunks.size() ? chunks.get((int) c) : null;
    }

    private long at(long index) {
        return ((index - base) % CHUNK_ELEMENTS) * elementBytes;
    }

    int getInt(long index) {
        MemorySegment s = chunk(index, false);
        return s == null ? 0 : s.get(ValueLayout.JAVA_INT_UNALIGNED, at(index));
    }

    void setInt(long index, int v) {
        chunk(index, true).set(ValueLayout.JAVA_INT_UNALIGNED, at(index), v);
    }

    short getShort(long index) {
        MemorySegment s = chunk(index, false);
        return s == null ? 0 : s.get(ValueLayout.JAVA_SHORT_UNALIGNED, at(index));
    }

    void setShort(long index, short v) {
        chunk(index, true).set(ValueLayout.JAVA_SHORT_UNALIGNED, at(index), v);
    }

    /** Element {@code index} as a slice of {@code elementBytes} (allocated on demand). */
    MemorySegment element(long index) {
        return chunk(index, true).asSlice(at(index), elementBytes);
    }

    /** Gives back every whole chunk whose elements are all below {@code index}. */
    void dropBelow(long index) {
        while (!chunks.isEmpty() && index - base >= CHUNK_ELEMENTS) {
            side.free(chunks.remove(0));
            base += CHUNK_ELEMENTS;
        }
    }

    /** A copy in another sequence's side memory (forks). */
    SideArray copyTo(SideMemory other) {
        SideArray c = new SideArray(other, elementBytes);
        c.base = base;
        for (MemorySegment s : chunks) {
            MemorySegment n = other.allocate(s.byteSize());
            MemorySegment.copy(s, 0, n, 0, s.byteSize());
            c.chunks.add(n);
        }
        return c;
    }
}
