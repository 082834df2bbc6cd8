package dev.kvserve.kernels.cpu;

import static dev.kvserve.kernels.cpu.Vec.FL;
import static dev.kvserve.kernels.cpu.Vec.LE_SHORT;
import static dev.kvserve.kernels.cpu.Vec.intsToFloats;
import static dev.kvserve.kernels.cpu.Vec.loadInts;

import dev.kvserve.kernels.GgmlQuantize;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Q5_K super-blocks of 256 (176 bytes): f16 d, f16 dmin, 12 bytes of 6-bit scales and mins as in
 * Q4_K ({@link GgmlQuantize#scaleMinK4}), 32 bytes qh, 128 bytes of nibbles laid out as Q4_K's.
 * Sub-block j takes its fifth bit from bit j of qh[l]; value = d·scale·q − dmin·min.
 */
final class Q5_KKernel extends TiledDecodeKernel {
    Q5_KKernel() {
        super(256, 176);
    }

    @Override
    void decodeBlock(MemorySegment w, long o, float[] dst, int to) {
        float d = Float.float16ToFloat(w.get(LE_SHORT, o));
        float dmin = Float.float16ToFloat(w.get(LE_SHORT, o + 2));
        for (int c = 0; c < 4; c++) {
            int sm1 = GgmlQuantize.scaleMinK4(w, o + 4, 2 * c);
            int sm2 = GgmlQuantize.scaleMinK4(w, o + 4, 2 * c + 1);
            float d1 = d * (sm1 & 0xff);
            float m1 = dmin * (sm1 >>> 8);
            float d2 = d * (sm2 & 0xff);
            float m2 = dmin * (sm2 >>> 8);
            for (int l = 0; l < 32; l += FL) {
                IntVector q = loadInts(w, o + 48 + 32 * c + l);
                IntVector qh = loadInts(w, o + 16 + l);
                IntVector lo = q.and(15).or(qh.lanewise(VectorOperators.LSHR, 2 * c).and(1).lanewise(VectorOperators.LSHL, 4));
                IntVector hi = q.lanewise(VectorOperators.LSHR, 4).and(15)
                        .or(qh.lanewise(VectorOperators.LSHR, 2 * c + 1).and(1).lanewise(VectorOperators.LSHL, 4));
                intsToFloats(lo).mul(d1).sub(m1).intoArray(dst, to + 64 * c + l);
                intsToFloats(hi).mul(d2).sub(m2).intoArray(dst, to + 64 * c + 32 + l);
            }
        }
    }
}
