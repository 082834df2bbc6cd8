package dev.kvserve.kernels;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * A named tensor of weights in one of ggml's storage types. {@code shape} is in ggml order:
 * {@code shape[0]} is the length of a row (the contiguous dimension), {@code shape[1]} the number
 * of rows, and so on. {@code data} holds exactly {@code type.bytesFor(elements())} bytes; on the CPU
 * it is usually a slice of a memory-mapped model file, on the GPU a device-memory address.
 */
public record WeightTensor(String name, GgmlType type, long[] shape, MemorySegment data) {

    public WeightTensor {
        shape = shape.clone();
    }

    /** Values in one row (ggml {@code ne0}). */
    public int cols() {
        return Math.toIntExact(shape[0]);
    }

    /** Number of rows: the product of every dimension after the first. */
    public int rows() {
        long r = 1;
        for (int i = 1; i < shape.length; i++) r *= shape[i];
        return Math.toIntExact(r);
    }

    public long elements() {
        long n = 1;
        for (long d : shape) n *= d;
        return n;
    }

    /** Bytes of one row in the storage type. */
    public long rowBytes() {
        return type.bytesFor(shape[0]);
    }

    @Override
    public String toString() {
        return name + " " + type + " " + Arrays.toString(shape);
    }
}
