package dev.kvserve.kernels.cpu;

import static dev.kvserve.kernels.cpu.Q5_0Kernel.IOTA;
import static dev.kvserve.kernels.cpu.Q5_0Kernel.LE_INT;
import static dev.kvserve.kernels.cpu.Vec.FL;
import static dev.kvserve.kernels.cpu.Vec.I;
import static dev.kvserve.kernels.cpu.Vec.LE_SHORT;
import static dev.kvserve.kernels.cpu.Vec.intsToFloats;
import static dev.kvserve.kernels.cpu.Vec.loadInts;

import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q5_1 blocks of 32 (24 bytes): f16 d, f16 m, 32-bit qh, 16 bytes of nibbles, laid out as Q5_0
 * after the extra m; value = q·d + m with q = 0..31 (see {@link Q5_0Kernel}).
 */
final class Q5_1Kernel extends TiledDecodeKernel {
    Q5_1Kernel() {
        super(32, 24);
    }

    @Override
    void decodeBlock(MemorySegment w, long o, float[] dst, int to) {
        float d = Float.float16ToFloat(w.get(LE_SHORT, o));
        float m = Float.float16ToFloat(w.get(LE_SHORT, o + 2));
        IntVector qh = IntVector.broadcast(I, w.get(LE_INT, o + 4));
        for (int j = 0; j < 16; j += FL) {
            IntVector q = loadInts(w, o + 8 + j);
            IntVector shift = IOTA.add(j);
            IntVector hLo = qh.lanewise(VectorOperators.LSHR, shift).and(1).lanewise(VectorOperators.LSHL, 4);
            IntVector hHi = qh.lanewise(VectorOperators.LSHR, shift.add(16)).and(1).lanewise(VectorOperators.LSHL, 4);
            intsToFloats(q.and(15).or(hLo)).mul(d).add(m).intoArray(dst, to + j);
            intsToFloats(q.lanewise(VectorOperators.LSHR, 4).and(15).or(hHi)).mul(d).add(m).intoArray(dst, to + 16 + j);
        }
    }
}
