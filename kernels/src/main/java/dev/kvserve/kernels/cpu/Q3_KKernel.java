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
 * Q3_K super-blocks of 256 (110 bytes): 32 bytes hmask, 64 bytes of 2-bit quants laid out as
 * Q2_K's, 12 bytes of packed 6-bit scales ({@link GgmlQuantize#scaleQ3K}), f16 d. Element
 * 128h + 32g + l (l < 32): low bits 2g..2g+1 of quant byte 32h + l, third bit from bit 4h + g of
 * hmask[l], scale of run 8h + 2g + l/16; value = d·(scale − 32)·(q − 4 + 4·bit).
 */
final class Q3_KKernel extends TiledDecodeKernel {
    Q3_KKernel() {
        super(256, 110);
    }

    @Override
    void decodeBlock(MemorySegment w, long o, float[] dst, int to) {
        float d = Float.float16ToFloat(w.get(LE_SHORT, o + 108));
        for (int h = 0; h < 2; h++) {
            for (int g = 0; g < 4; g++) {
                for (int l = 0; l < 32; l += FL) {
                    float dl = d * GgmlQuantize.scaleQ3K(w, o + 96, 8 * h + 2 * g + l / 16);
                    IntVector q = loadInts(w, o + 32 + 32 * h + l).lanewise(VectorOperators.LSHR, 2 * g).and(3);
                    IntVector high = loadInts(w, o + l).lanewise(VectorOperators.LSHR, 4 * h + g).and(1);
                    intsToFloats(q.sub(4).add(high.lanewise(VectorOperators.LSHL, 2)))
                            .mul(dl).intoArray(dst, to + 128 * h + 32 * g + l);
                }
            }
        }
    }
}
