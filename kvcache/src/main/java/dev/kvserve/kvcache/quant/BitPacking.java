package dev.kvserve.kvcache.quant;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Little-endian bit streams of fixed-width codes: code {@code i} of a row occupies bits
 * {@code i*bits .. i*bits+bits-1} counted from bit 0 of byte 0. Any width from 1 to 16 packs without
 * spare bits, so a 3-bit row of 32 codes takes exactly 12 bytes; that is what the byte accounting
 * counts and what is stored.
 */
public final class BitPacking {

    private BitPacking() {}

    /** Bytes taken by {@code count} codes of {@code bits} bits. */
    public static int bytesFor(int count, int bits) {
        return (int) (((long) count * bits + 7) >>> 3);
    }

    public static void put(byte[] buf, int byteOffset, int index, int bits, int code) {
        long bit = (long) index * bits;
        int pos = byteOffset + (int) (bit >>> 3);
        int shift = (int) (bit & 7);
        int remaining = bits;
        int value = code;
        while (remaining > 0) {
            int room = 8 - shift;
            int take = Math.min(room, remaining);
            int mask = ((1 << take) - 1) << shift;
            buf[pos] = (byte) ((buf[pos] & ~mask) | ((value << shift) & mask));
            value >>>= take;
            remaining -= take;
            shift = 0;
            pos++;
        }
    }

    public static int get(byte[] buf, int byteOffset, int index, int bits) {
        long bit = (long) index * bits;
        int pos = byteOffset + (int) (bit >>> 3);
        int shift = (int) (bit & 7);
        int result = 0;
        int got = 0;
        while (got < bits) {
            int room = 8 - shift;
            int take = Math.min(room, bits - got);
            int part = ((buf[pos] & 0xFF) >>> shift) & ((1 << take) - 1);
            result |= part << got;
            got += take;
            shift = 0;
            pos++;
        }
        return result;
    }

    /** {@link #put} on pool memory: code {@code index} of the run starting at byte {@code off}. */
    public static void put(MemorySegment seg, long off, int index, int bits, int code) {
        long bit = (long) index * bits;
        long pos = off + (bit >>> 3);
        int shift = (int) (bit & 7);
        int remaining = bits;
        int value = code;
        while (remaining > 0) {
            int take = Math.min(8 - shift, remaining);
            int mask = ((1 << take) - 1) << shift;
            int old = seg.get(ValueLayout.JAVA_BYTE, pos) & 0xFF;
            seg.set(ValueLayout.JAVA_BYTE, pos, (byte) ((old & ~mask) | ((value << shift) & mask)));
            value >>>= take;
            remaining -= take;
            shift = 0;
            pos++;
        }
    }

    /** {@link #get} on pool memory. */
    public static int get(MemorySegment seg, long off, int index, int bits) {
        long bit = (long) index * bits;
        long pos = off + (bit >>> 3);
        int shift = (int) (bit & 7);
        int result = 0;
        int got = 0;
        while (got < bits) {
            int take = Math.min(8 - shift, bits - got);
            int part = ((seg.get(ValueLayout.JAVA_BYTE, pos) & 0xFF) >>> shift) & ((1 << take) - 1);
            result |= part << got;
            got += take;
            shift = 0;
            pos++;
        }
        return result;
    }
}
