package dev.kvserve.kernels.cpu;

import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Vector species shared by the CPU kernels. Every kernel works in FloatVectors of the machine's
 * preferred width ({@link #FL} lanes: 16 with AVX-512, 8 with AVX2); the narrower byte and short
 * species hold exactly {@link #FL} lanes so that one load widens into one FloatVector.
 */
final class Vec {
    private Vec() {}

    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int FL = F.length();
    static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;

    /**
     * The quantized kernels need a byte species of FL lanes (at least 64 bits), i.e. 256-bit or
     * wider float vectors; on narrower hardware matmul falls back to the scalar kernels.
     */
    static final boolean QUANT_OK = FL >= 8 && FL <= 16;

    static final VectorSpecies<Byte> B = QUANT_OK ? VectorSpecies.of(byte.class, VectorShape.forBitSize(FL * 8)) : null;
    static final VectorSpecies<Short> S = QUANT_OK ? VectorSpecies.of(short.class, VectorShape.forBitSize(FL * 16)) : null;

    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    static final ValueLayout.OfShort LE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE);
    static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;

    /** Low 4 bits of every byte. */
    static ByteVector lowNibbles(ByteVector q) {
        return q.and((byte) 0x0F);
    }

    /**
     * High 4 bits of every byte, shifted down. x86 has no byte shift, so shift 32-bit lanes and
     * mask off the bits that crossed in from the neighbouring byte.
     */
    static ByteVector highNibbles(ByteVector q) {
        return q.lanewise(jdk.incubator.vector.VectorOperators.LSHR, 4);
    }

    /** Each byte shifted left by n (bits pushed past bit 7 of a byte land in its neighbour: mask them). */
    static ByteVector shiftLeft(ByteVector q, int n) {
        return q.lanewise(jdk.incubator.vector.VectorOperators.LSHL, n);
    }

    /** Each byte shifted right by n (bits from the neighbour byte come in at the top: mask them). */
    static ByteVector shiftRight(ByteVector q, int n) {
        return q.lanewise(jdk.incubator.vector.VectorOperators.LSHR, n);
    }

    /** Bytes widened to FL floats (sign-extending). */
    static FloatVector toFloats(ByteVector q) {
        return (FloatVector) q.convertShape(jdk.incubator.vector.VectorOperators.B2F, F, 0);
    }

}
