package dev.kvserve.kernels.cpu;

import static dev.kvserve.kernels.cpu.Vec.FL;
import static dev.kvserve.kernels.cpu.Vec.LE_SHORT;
import static dev.kvserve.kernels.cpu.Vec.intsToFloats;
import static dev.kvserve.kernels.cpu.Vec.loadInts;

import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q4_1 blocks of 32 (20 bytes): f16 d, f16 m, 16 bytes of nibbles laid out as Q4_0's (element j
 * in the low nibble of byte j, element j+16 in the high one); value = q·d + m.
 */
final class Q4_1Kernel extends TiledDecodeKernel {
    Q4_1Kernel() {
        super(32, 20);
    }

    @Override
    void decodeBlock(MemorySegment w, long o, float[] dst, int to) {
        float d = Float.float16ToFloat(w.get(LE_SHORT, o));
        float m = Float.float16ToFloat(w.get(LE_SHORT, o + 2));
        for (int j = 0; j < 16; j += FL) {
            IntVector q = loadInts(w, o + 4 + j);
            intsToFloats(q.and(15)).mul(d).add(m).intoArray(dst, to + j);
            intsToFloats(q.lanewise(VectorOperators.LSHR, 4).and(15)).mul(d).add(m).intoArray(dst, to + 16 + j);
        }
    }
}
