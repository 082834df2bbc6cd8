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
 * the array is used as a queue, and any chunk none of whose elements is used any more
 * ({@link #keepChunks}) when an eviction rule left holes; a freed chunk reads as zero and is allocated
 * again if written.
 */
final class SideArray {

    static final int CHUNK_ELEMENTS = 32;
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
        if (c >= chunks.size()) return null;
        MemorySegment s = chunks.get((int) c);
        if (s == null && grow) {
            s = side.allocate((long) CHUNK_ELEMENTS * elementBytes);
            chunks.set((int) c, s);
        }
        return s;
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
            MemorySegment s = chunks.remove(0);
            if (s != null) side.free(s);
            base += CHUNK_ELEMENTS;
        }
    }

    /**
     * Gives back every allocated chunk {@code c} (elements {@code c·CHUNK_ELEMENTS ..}) for which
     * {@code used.get(c)} is false.
     */
    void keepChunks(java.util.BitSet used) {
        for (int i = 0; i < chunks.size(); i++) {
            MemorySegment s = chunks.get(i);
            if (s != null && !used.get((int) (base / CHUNK_ELEMENTS) + i)) {
                side.free(s);
                chunks.set(i, null);
            }
        }
    }

    /** Bytes of the chunks allocated now. */
    long bytes() {
        long n = 0;
        for (MemorySegment s : chunks) if (s != null) n += s.byteSize();
        return n;
    }

    /** Frees every chunk (the array then reads as zero everywhere). */
    void clear() {
        for (MemorySegment s : chunks) if (s != null) side.free(s);
        chunks.clear();
        base = 0;
    }

    /** A copy in another sequence's side memory (forks). */
    SideArray copyTo(SideMemory other) {
        SideArray c = new SideArray(other, elementBytes);
        c.base = base;
        for (MemorySegment s : chunks) {
            if (s == null) {
                c.chunks.add(null);
                continue;
            }
            MemorySegment n = other.allocate(s.byteSize());
            MemorySegment.copy(s, 0, n, 0, s.byteSize());
            c.chunks.add(n);
        }
        return c;
    }
}
