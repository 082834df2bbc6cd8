package dev.kvserve.runtime.gguf;

import dev.kvserve.kernels.GgmlType;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Writes a GGUF v3 file in two phases: first every metadata value and every tensor's name, type and
 * shape (the header needs all of them, offsets included), then the tensors' bytes, streamed in the
 * order the tensors were added, in as many pieces as the caller likes. So a multi-gigabyte model
 * never has to be on the heap at once. Each tensor starts at a multiple of {@code general.alignment}
 * (32 unless set) and is followed by zero padding to the next multiple, as gguf-py writes it.
 *
 * <pre>{@code
 * try (GgufWriter w = new GgufWriter(path)) {
 *     w.putString("general.architecture", "llama");
 *     w.addTensor("token_embd.weight", GgmlType.F32, 64, 512);
 *     w.appendTensorData("token_embd.weight", bytes);   // exactly 64 * 512 * 4 bytes, in any pieces
 * }
 * }</pre>
 */
public final class GgufWriter implements AutoCloseable {

    /** llama.cpp keeps tensor names in 64-byte buffers including the terminating NUL. */
    public static final int MAX_TENSOR_NAME_BYTES = 63;
    private static final int STAGING_BYTES = 1 << 20;

    private record Value(GgufValueType type, Object value) {}

    private static final class Tensor {
        final String name;
        final GgmlType type;
        final long[] shape;
        final long size;
        long offset;
        long written;

        Tensor(String name, GgmlType type, long[] shape, long size) {
            this.name = name;
            this.type = type;
            this.shape = shape;
            this.size = size;
        }
    }

    private final Path path;
    private final FileChannel channel;
    private final Map<String, Value> metadata = new LinkedHashMap<>();
    private final List<Tensor> tensors = new ArrayList<>();
    private final Map<String, Tensor> tensorsByName = new LinkedHashMap<>();
    private boolean headerWritten;
    private boolean closed;
    private int current;
    private long alignment = GgufFile.DEFAULT_ALIGNMENT;
    private byte[] staging;

    /** Creates (or truncates) {@code path}. */
    public GgufWriter(Path path) throws IOException {
        this.path = path;
        this.channel = FileChannel.open(path, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE);
    }

    public Path path() {
        return path;
    }

    // ---- metadata ----

    public GgufWriter putUInt8(String key, int value) {
        return put(key, GgufValueType.UINT8, (long) checkRange(key, value, 0, 0xff));
    }

    public GgufWriter putInt8(String key, int value) {
        return put(key, GgufValueType.INT8, (long) checkRange(key, value, Byte.MIN_VALUE, Byte.MAX_VALUE));
    }

    public GgufWriter putUInt16(String key, int value) {
        return put(key, GgufValueType.UINT16, (long) checkRange(key, value, 0, 0xffff));
    }

    public GgufWriter putInt16(String key, int value) {
        return put(key, GgufValueType.INT16, (long) checkRange(key, value, Short.MIN_VALUE, Short.MAX_VALUE));
    }

    public GgufWriter putUInt32(String key, long value) {
        return put(key, GgufValueType.UINT32, checkRange(key, value, 0, 0xffffffffL));
    }

    public GgufWriter putInt32(String key, int value) {
        return put(key, GgufValueType.INT32, (long) value);
    }

    /** {@code value} is taken as an unsigned bit pattern. */
    public GgufWriter putUInt64(String key, long value) {
        return put(key, GgufValueType.UINT64, value);
    }

    public GgufWriter putInt64(String key, long value) {
        return put(key, GgufValueType.INT64, value);
    }

    public GgufWriter putFloat32(String key, float value) {
        return put(key, GgufValueType.FLOAT32, value);
    }

    public GgufWriter putFloat64(String key, double value) {
        return put(key, GgufValueType.FLOAT64, value);
    }

    public GgufWriter putBool(String key, boolean value) {
        return put(key, GgufValueType.BOOL, value);
    }

    public GgufWriter putString(String key, String value) {
        return put(key, GgufValueType.STRING, value);
    }

    /**
     * An array: {@code values} is the Java array that {@link GgufArray} expects for {@code elementType}
     * ({@code String[]} for STRING, {@code float[]} for FLOAT32, {@code GgufArray[]} for ARRAY, ...).
     */
    public GgufWriter putArray(String key, GgufValueType elementType, Object values) {
        return put(key, GgufValueType.ARRAY, new GgufArray(elementType, values));
    }

    /** Sets {@code general.alignment} (a power of two), which places every tensor's data. */
    public GgufWriter setAlignment(int bytes) {
        if (bytes <= 0 || (bytes & (bytes - 1)) != 0) throw new IllegalArgumentException("alignment " + bytes + " is not a power of two");
        return putUInt32("general.alignment", bytes);
    }

    /**
     * A value of any type, as {@link GgufFile#metadata()} and {@link GgufFile#valueType} report it:
     * integers as a {@link Number}, FLOAT32/FLOAT64 as a {@link Number}, BOOL as a {@link Boolean},
     * STRING as a {@link String}, ARRAY as a {@link GgufArray}. Replaces an earlier value of the key.
     */
    public GgufWriter put(String key, GgufValueType type, Object value) {
        requireHeaderOpen();
        if (key == null || type == null || value == null) throw new IllegalArgumentException("key, type and value are required");
        Object normalized = switch (type) {
            case UINT8, INT8, UINT16, INT16, UINT32, INT32, UINT64, INT64 -> {
                if (!(value instanceof Long || value instanceof Integer || value instanceof Short || value instanceof Byte)) {
                    throw wrongJavaType(key, type, value);
                }
                long v = ((Number) value).longValue();
                switch (type) {
                    case UINT8 -> checkRange(key, v, 0, 0xff);
                    case INT8 -> checkRange(key, v, Byte.MIN_VALUE, Byte.MAX_VALUE);
                    case UINT16 -> checkRange(key, v, 0, 0xffff);
                    case INT16 -> checkRange(key, v, Short.MIN_VALUE, Short.MAX_VALUE);
                    case UINT32 -> checkRange(key, v, 0, 0xffffffffL);
                    case INT32 -> checkRange(key, v, Integer.MIN_VALUE, Integer.MAX_VALUE);
                    default -> { }
                }
                yield v;
            }
            case FLOAT32, FLOAT64 -> {
                if (!(value instanceof Number n)) throw wrongJavaType(key, type, value);
                yield type == GgufValueType.FLOAT32 ? (Object) n.floatValue() : (Object) n.doubleValue();
            }
            case BOOL -> {
                if (!(value instanceof Boolean)) throw wrongJavaType(key, type, value);
                yield value;
            }
            case STRING -> {
                if (!(value instanceof String)) throw wrongJavaType(key, type, value);
                yield value;
            }
            case ARRAY -> {
                if (!(value instanceof GgufArray)) throw wrongJavaType(key, type, value);
                yield value;
            }
        };
        if (key.equals("general.alignment")) {
            long a = normalized instanceof Long l ? l : -1;
            if (a <= 0 || (a & (a - 1)) != 0 || a > (1 << 30)) {
                throw new IllegalArgumentException("general.alignment must be a power of two integer, not " + value);
            }
            alignment = a;
        }
        metadata.put(key, new Value(type, normalized));
        return this;
    }

    // ---- tensors ----

    /** Declares a tensor; {@code shape} is in ggml order ({@code shape[0]} = row length). */
    public GgufWriter addTensor(String name, GgmlType type, long... shape) {
        requireHeaderOpen();
        if (name == null || type == null) throw new IllegalArgumentException("name and type are required");
        if (name.getBytes(StandardCharsets.UTF_8).length > MAX_TENSOR_NAME_BYTES) {
            throw new IllegalArgumentException("tensor name '" + name + "' is longer than " + MAX_TENSOR_NAME_BYTES + " bytes");
        }
        if (tensorsByName.containsKey(name)) throw new IllegalArgumentException("tensor '" + name + "' was already added");
        if (shape.length < 1 || shape.length > GgufFile.MAX_DIMS) {
            throw new IllegalArgumentException("tensor '" + name + "' has " + shape.length + " dimensions; GGUF allows 1 to 4");
        }
        long elements = 1;
        for (long d : shape) {
            if (d < 0) throw new IllegalArgumentException("tensor '" + name + "' has a negative dimension " + Arrays.toString(shape));
            elements = Math.multiplyExact(elements, d);
        }
        if (shape[0] % type.blockSize != 0) {
            throw new IllegalArgumentException("tensor '" + name + "': row length " + shape[0] + " is not a multiple of "
                    + type + "'s block size " + type.blockSize);
        }
        Tensor t = new Tensor(name, type, shape.clone(), type.bytesFor(elements));
        tensors.add(t);
        tensorsByName.put(name, t);
        return this;
    }

    /** Bytes that tensor {@code name} takes: what its appends must add up to. */
    public long tensorBytes(String name) {
        Tensor t = tensorsByName.get(name);
        if (t == null) throw new IllegalArgumentException("no tensor '" + name + "' was added");
        return t.size;
    }

    /**
     * Appends {@code bytes} to tensor {@code name}'s data. Tensors are written in the order they
     * were added, each completely before the next; the first call writes the header, after which
     * metadata and tensors can no longer be added.
     */
    public void appendTensorData(String name, MemorySegment bytes) throws IOException {
        requireOpen();
        if (!headerWritten) writeHeader();
        // Zero-byte tensors need no append: step over them unless this call is for one.
        while (current < tensors.size() && tensors.get(current).size == 0 && !tensors.get(current).name.equals(name)) {
            finishTensor();
        }
        if (current >= tensors.size()) throw new IllegalStateException("every tensor is already written; got more data for '" + name + "'");
        Tensor t = tensors.get(current);
        if (!t.name.equals(name)) {
            throw new IllegalStateException("tensors are written in the order they were added: expected data for '"
                    + t.name + "', got '" + name + "'");
        }
        if (bytes.byteSize() > t.size - t.written) {
            throw new IllegalArgumentException("tensor '" + name + "' takes " + t.size + " bytes; " + t.written
                    + " are written and " + bytes.byteSize() + " more would overflow it");
        }
        writeFully(bytes);
        t.written += bytes.byteSize();
        if (t.written == t.size) finishTensor();
    }

    /** Writes all of tensor {@code name} at once: {@code bytes} must be exactly {@link #tensorBytes} long. */
    public void writeTensor(String name, MemorySegment bytes) throws IOException {
        if (bytes.byteSize() != tensorBytes(name)) {
            throw new IllegalArgumentException("tensor '" + name + "' takes " + tensorBytes(name) + " bytes, not " + bytes.byteSize());
        }
        appendTensorData(name, bytes);
    }

    /** Writes the padding after the current (complete) tensor and moves on to the next. */
    private void finishTensor() throws IOException {
        Tensor t = tensors.get(current);
        long end = t.offset + t.size;
        writeZeros(GgufFile.alignUp(end, alignment) - end);
        current++;
    }

    /** Writes the header if no tensor data was written, then checks that every tensor is complete. */
    @Override
    public void close() throws IOException {
        if (closed) return;
        try {
            if (!headerWritten) writeHeader();
            while (current < tensors.size() && tensors.get(current).written == tensors.get(current).size) finishTensor();
            if (current < tensors.size()) {
                Tensor t = tensors.get(current);
                throw new IllegalStateException(path + ": tensor '" + t.name + "' got " + t.written + " of its "
                        + t.size + " bytes; the file is incomplete");
            }
        } finally {
            closed = true;
            channel.close();
        }
    }

    // ---- encoding ----

    private void writeHeader() throws IOException {
        headerWritten = true;
        Buffer h = new Buffer();
        h.u32(GgufFile.MAGIC);
        h.u32(3);
        h.u64(tensors.size());
        h.u64(metadata.size());
        for (Map.Entry<String, Value> e : metadata.entrySet()) {
            h.string(e.getKey());
            h.u32(e.getValue().type().id);
            writeValue(h, e.getValue().type(), e.getValue().value());
        }
        long offset = 0;
        for (Tensor t : tensors) {
            t.offset = offset;
            offset = GgufFile.alignUp(offset + t.size, alignment);
            h.string(t.name);
            h.u32(t.shape.length);
            for (long d : t.shape) h.u64(d);
            h.u32(t.type.id);
            h.u64(t.offset);
        }
        long headerBytes = h.size();
        writeFully(MemorySegment.ofBuffer(h.buffer.flip()));
        writeZeros(GgufFile.alignUp(headerBytes, alignment) - headerBytes);
    }

    private static void writeValue(Buffer h, GgufValueType type, Object value) {
        switch (type) {
            case UINT8, INT8, BOOL -> h.u8(type == GgufValueType.BOOL ? ((Boolean) value ? 1 : 0) : ((Long) value).intValue());
            case UINT16, INT16 -> h.u16(((Long) value).intValue());
            case UINT32, INT32 -> h.u32(((Long) value).intValue());
            case UINT64, INT64 -> h.u64((Long) value);
            case FLOAT32 -> h.u32(Float.floatToRawIntBits((Float) value));
            case FLOAT64 -> h.u64(Double.doubleToRawLongBits((Double) value));
            case STRING -> h.string((String) value);
            case ARRAY -> writeArray(h, (GgufArray) value);
        }
    }

    private static void writeArray(Buffer h, GgufArray array) {
        h.u32(array.elementType().id);
        h.u64(array.length());
        switch (array.values()) {
            case byte[] a -> { for (byte v : a) h.u8(v); }
            case short[] a -> { for (short v : a) h.u16(v); }
            case int[] a -> { for (int v : a) h.u32(v); }
            case long[] a -> { for (long v : a) h.u64(v); }
            case float[] a -> { for (float v : a) h.u32(Float.floatToRawIntBits(v)); }
            case double[] a -> { for (double v : a) h.u64(Double.doubleToRawLongBits(v)); }
            case boolean[] a -> { for (boolean v : a) h.u8(v ? 1 : 0); }
            case String[] a -> { for (String v : a) h.string(v); }
            case GgufArray[] a -> { for (GgufArray v : a) writeArray(h, v); }
            default -> throw new AssertionError("GgufArray admits no " + array.values().getClass());
        }
    }

    private void writeFully(MemorySegment bytes) throws IOException {
        boolean byteBacked = bytes.isNative() || bytes.heapBase().map(b -> b instanceof byte[]).orElse(false);
        for (long done = 0; done < bytes.byteSize(); ) {
            long n = Math.min(bytes.byteSize() - done, byteBacked ? 1 << 30 : STAGING_BYTES);
            ByteBuffer chunk;
            if (byteBacked) {
                chunk = bytes.asSlice(done, n).asByteBuffer();
            } else {
                // A float[]- or short[]-backed heap segment has no ByteBuffer view: go through bytes.
                if (staging == null) staging = new byte[STAGING_BYTES];
                MemorySegment.copy(bytes, ValueLayout.JAVA_BYTE, done, staging, 0, (int) n);
                chunk = ByteBuffer.wrap(staging, 0, (int) n);
            }
            while (chunk.hasRemaining()) channel.write(chunk);
            done += n;
        }
    }

    private void writeZeros(long n) throws IOException {
        if (n > 0) writeFully(MemorySegment.ofArray(new byte[(int) n]));
    }

    private void requireHeaderOpen() {
        requireOpen();
        if (headerWritten) throw new IllegalStateException("the header is written once tensor data starts; add metadata and tensors first");
    }

    private void requireOpen() {
        if (closed) throw new IllegalStateException(path + " is closed");
    }

    private static long checkRange(String key, long value, long min, long max) {
        if (value < min || value > max) {
            throw new IllegalArgumentException("metadata key '" + key + "': " + value + " is outside [" + min + ", " + max + "]");
        }
        return value;
    }

    private static int checkRange(String key, int value, int min, int max) {
        return (int) checkRange(key, (long) value, min, max);
    }

    private static IllegalArgumentException wrongJavaType(String key, GgufValueType type, Object value) {
        return new IllegalArgumentException("metadata key '" + key + "': a " + type + " cannot be written from a "
                + value.getClass().getSimpleName());
    }

    /** A growable little-endian byte buffer for the header. */
    private static final class Buffer {
        ByteBuffer buffer = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);

        private void ensure(long n) {
            if (buffer.remaining() >= n) return;
            long wanted = Math.max((long) buffer.capacity() * 2, buffer.position() + n);
            if (wanted > Integer.MAX_VALUE - 16) throw new IllegalStateException("GGUF header larger than 2 GiB");
            ByteBuffer bigger = ByteBuffer.allocate((int) wanted).order(ByteOrder.LITTLE_ENDIAN);
            bigger.put(buffer.flip());
            buffer = bigger;
        }

        long size() {
            return buffer.position();
        }

        void u8(int v) {
            ensure(1);
            buffer.put((byte) v);
        }

        void u16(int v) {
            ensure(2);
            buffer.putShort((short) v);
        }

        void u32(int v) {
            ensure(4);
            buffer.putInt(v);
        }

        void u64(long v) {
            ensure(8);
            buffer.putLong(v);
        }

        void string(String s) {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            u64(b.length);
            ensure(b.length);
            buffer.put(b);
        }
    }
}
