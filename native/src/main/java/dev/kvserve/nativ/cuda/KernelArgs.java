package dev.kvserve.nativ.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Arguments of one kernel launch, in parameter order, and their packing into the
 * {@code void** kernelParams} array that cuLaunchKernel reads: entry i points at the value of
 * parameter i. Every value gets its own 8-byte, 8-aligned slot (a 4-byte value in the low bytes),
 * which satisfies the alignment of every parameter type the kernels use.
 */
public final class KernelArgs {

    /** Bytes between consecutive value slots. */
    public static final int SLOT_BYTES = 8;

    private final List<ParamKind> kinds = new ArrayList<>();
    private long[] bits = new long[16];

    public KernelArgs ptr(MemorySegment deviceBuffer) {
        return add(ParamKind.PTR, deviceBuffer.address());
    }

    public KernelArgs ptr(long deviceAddress) {
        return add(ParamKind.PTR, deviceAddress);
    }

    public KernelArgs i32(int value) {
        return add(ParamKind.I32, value & 0xFFFFFFFFL);
    }

    public KernelArgs i64(long value) {
        return add(ParamKind.I64, value);
    }

    public KernelArgs f32(float value) {
        return add(ParamKind.F32, Float.floatToRawIntBits(value) & 0xFFFFFFFFL);
    }

    private KernelArgs add(ParamKind kind, long value) {
        if (kinds.size() == bits.length) bits = Arrays.copyOf(bits, bits.length * 2);
        bits[kinds.size()] = value;
        kinds.add(kind);
        return this;
    }

    public int count() {
        return kinds.size();
    }

    public List<ParamKind> kinds() {
        return List.copyOf(kinds);
    }

    /**
     * Writes the values and the pointer array with {@code allocator} (an arena, or a slicing
     * allocator over a reused buffer) and returns the pointer array. Both must stay valid until the
     * launch call returns; the driver copies the values during it.
     */
    public MemorySegment pack(SegmentAllocator allocator) {
        int n = kinds.size();
        MemorySegment values = allocator.allocate((long) SLOT_BYTES * Math.max(n, 1), SLOT_BYTES);
        MemorySegment pointers = allocator.allocate(ADDRESS, Math.max(n, 1));
        for (int i = 0; i < n; i++) {
            long offset = (long) SLOT_BYTES * i;
            switch (kinds.get(i)) {
                case PTR, I64 -> values.set(JAVA_LONG, offset, bits[i]);
                case I32 -> values.set(JAVA_INT, offset, (int) bits[i]);
                case F32 -> values.set(JAVA_FLOAT, offset, Float.intBitsToFloat((int) bits[i]));
            }
            pointers.setAtIndex(ADDRESS, i, values.asSlice(offset, SLOT_BYTES));
        }
        return pointers;
    }

    /** Fails, naming the kernel, when these arguments do not have the kinds {@code signature} lists. */
    public void requireSignature(String kernel, List<ParamKind> signature) {
        if (!kinds.equals(signature)) {
            throw new IllegalArgumentException("kernel " + kernel + " takes " + signature + " but was given " + kinds);
        }
    }
}
