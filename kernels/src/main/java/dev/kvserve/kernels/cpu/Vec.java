package dev.kvserve.kernels.cpu;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
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

    // The helpers below stay under 35 bytes of bytecode so that C2 always inlines them: a
    // vector passed to or returned from a call that is not inlined is boxed on the heap.

    /** FL bytes at {@code offset} widened to FL ints (sign-extending). */
    static IntVector loadInts(MemorySegment w, long offset) {
        return (IntVector) ByteVector.fromMemorySegment(B, w, offset, LE).convertShape(VectorOperators.B2I, I, 0);
    }

    /** FL bytes at {@code offset} widened to FL ints (zero-extending). */
    static IntVector loadUnsignedInts(MemorySegment w, long offset) {
        return (IntVector) ByteVector.fromMemorySegment(B, w, offset, LE).convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0);
    }

    /** Ints to floats. */
    static FloatVector intsToFloats(IntVector v) {
        return (FloatVector) v.convert(VectorOperators.I2F, 0);
    }

    /** Bytes widened to FL floats (sign-extending). */
    static FloatVector toFloats(ByteVector q) {
        return (FloatVector) q.convertShape(VectorOperators.B2F, F, 0);
    }
}
