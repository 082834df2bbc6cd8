package dev.kvserve.kernels.cpu;

import static dev.kvserve.kernels.cpu.Vec.FL;
import static dev.kvserve.kernels.cpu.Vec.I;
import static dev.kvserve.kernels.cpu.Vec.LE_SHORT;
import static dev.kvserve.kernels.cpu.Vec.intsToFloats;
import static dev.kvserve.kernels.cpu.Vec.loadInts;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q5_0 blocks of 32 (22 bytes): f16 d, a little-endian 32-bit qh whose bit j is the fifth bit of
 * element j, then 16 bytes of nibbles as in Q4_0; value = (q − 16)·d. The fifth bits are taken
 * from a broadcast qh with a per-lane variable shift (lane i of the run starting at j shifts by
 * j + i), one instruction on AVX2 and AVX-512.
 */
final class Q5_0Kernel extends TiledDecodeKernel {
    static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(Vec.LE);
    /** Lane numbers 0..FL-1. */
    static final IntVector IOTA = IntVector.zero(I).addIndex(1);

    Q5_0Kernel() {
        super(32, 22);
    }

    @Override
    void decodeBlock(MemorySegment w, long o, float[] dst, int to) {
        float d = Float.float16ToFloat(w.get(LE_SHORT, o));
        IntVector qh = IntVector.broadcast(I, w.get(LE_INT, o + 2));
        for (int j = 0; j < 16; j += FL) {
            IntVector q = loadInts(w, o + 6 + j);
            IntVector shift = IOTA.add(j);
            IntVector hLo = qh.lanewise(VectorOperators.LSHR, shift).and(1).lanewise(VectorOperators.LSHL, 4);
            IntVector hHi = qh.lanewise(VectorOperators.LSHR, shift.add(16)).and(1).lanewise(VectorOperators.LSHL, 4);
            intsToFloats(q.and(15).or(hLo).sub(16)).mul(d).intoArray(dst, to + j);
            intsToFloats(q.lanewise(VectorOperators.LSHR, 4).and(15).or(hHi).sub(16)).mul(d).intoArray(dst, to + 16 + j);
        }
    }
}
