package dev.kvserve.kernels.cpu;

import static dev.kvserve.kernels.cpu.Vec.FL;
import static dev.kvserve.kernels.cpu.Vec.LE_SHORT;
import static dev.kvserve.kernels.cpu.Vec.intsToFloats;
import static dev.kvserve.kernels.cpu.Vec.loadInts;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import jdk.incubator.vector.VectorOperators;

/**
 * Q2_K super-blocks of 256 (84 bytes): 16 scale bytes (4-bit scale | 4-bit min << 4, one per run
 * of 16), 64 bytes of 2-bit quants, f16 d, f16 dmin. Element 128h + 32g + l (l < 32) is bits
 * 2g..2g+1 of quant byte 32h + l with scale byte 8h + 2g + l/16; value = d·sc·q − dmin·m. A
 * vector of FL ≤ 16 lanes never straddles two runs of 16.
 */
final class Q2_KKernel extends TiledDecodeKernel {
    Q2_KKernel() {
        super(256, 84);
    }

    @Override
    void decodeBlock(MemorySegment w, long o, float[] dst, int to) {
        float d = Float.float16ToFloat(w.get(LE_SHORT, o + 80));
        float min = Float.float16ToFloat(w.get(LE_SHORT, o + 82));
        for (int h = 0; h < 2; h++) {
            for (int g = 0; g < 4; g++) {
                for (int l = 0; l < 32; l += FL) {
                    int sc = w.get(ValueLayout.JAVA_BYTE, o + 8 * h + 2 * g + l / 16) & 0xff;
                    float dl = d * (sc & 0xF);
                    float ml = min * (sc >>> 4);
                    intsToFloats(loadInts(w, o + 16 + 32 * h + l).lanewise(VectorOperators.LSHR, 2 * g).and(3))
                            .mul(dl).sub(ml).intoArray(dst, to + 128 * h + 32 * g + l);
                }
            }
        }
    }
}
