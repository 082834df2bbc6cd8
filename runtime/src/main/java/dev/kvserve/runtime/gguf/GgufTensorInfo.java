package dev.kvserve.runtime.gguf;

import dev.kvserve.kernels.GgmlType;

import java.util.Arrays;

/**
 * One entry of a GGUF file's tensor table.
 *
 * @param shape    ggml order: {@code shape[0]} is the row length
 * @param offset   where the data starts, relative to the data section ({@link GgufFile#dataOffset()})
 * @param byteSize bytes of data, {@code type.bytesFor(elements)}
 */
public record GgufTensorInfo(String name, GgmlType type, long[] shape, long offset, long byteSize) {

    public GgufTensorInfo {
        shape = shape.clone();
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    public long elements() {
        long n = 1;
        for (long d : shape) n *= d;
        return n;
    }

    @Override
    public String toString() {
        return name + " " + type + " " + Arrays.toString(shape) + " @" + offset;
    }
}
