package dev.kvserve.kernels.cpu;

import static dev.kvserve.kernels.cpu.Vec.FL;
import static dev.kvserve.kernels.cpu.Vec.I;
import static dev.kvserve.kernels.cpu.Vec.LE_SHORT;
import static dev.kvserve.kernels.cpu.Vec.intsToFloats;
import static dev.kvserve.kernels.cpu.Vec.loadInts;

import dev.kvserve.kernels.GgmlQuantize;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * IQ4_NL blocks of 32 (18 bytes): f16 d, 16 bytes of nibbles laid out as Q4_0's, each an index
 * into 16 fixed non-uniform levels ({@link GgmlQuantize#IQ4_NL_VALUES}); value = d·level[q]. The
 * lookup is a lane permute: one {@code selectFrom} of a 16-lane table with AVX-512, a
 * two-vector {@code selectFrom} of two 8-lane halves with AVX2.
 */
final class Iq4_NlKernel extends TiledDecodeKernel {
    private static final IntVector LEVELS_LO = IntVector.fromArray(I, GgmlQuantize.IQ4_NL_VALUES, 0);
    private static final IntVector LEVELS_HI = FL == 16 ? LEVELS_LO : IntVector.fromArray(I, GgmlQuantize.IQ4_NL_VALUES, 8);

    Iq4_NlKernel() {
        super(32, 18);
    }

    @Override
    void decodeBlock(MemorySegment w, long o, float[] dst, int to) {
        float d = Float.float16ToFloat(w.get(LE_SHORT, o));
        for (int j = 0; j < 16; j += FL) {
            IntVector q = loadInts(w, o + 2 + j);
            IntVector lo = q.and(15);
            IntVector hi = q.lanewise(VectorOperators.LSHR, 4).and(15);
            IntVector vLo = FL == 16 ? lo.selectFrom(LEVELS_LO) : lo.selectFrom(LEVELS_LO, LEVELS_HI);
            IntVector vHi = FL == 16 ? hi.selectFrom(LEVELS_LO) : hi.selectFrom(LEVELS_LO, LEVELS_HI);
            intsToFloats(vLo).mul(d).intoArray(dst, to + j);
            intsToFloats(vHi).mul(d).intoArray(dst, to + 16 + j);
        }
    }
}
