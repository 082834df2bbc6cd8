package dev.kvserve.runtime.gguf;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.runtime.ModelFile;
import dev.kvserve.runtime.ModelFormatException;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A GGUF file (versions 2 and 3, little-endian), read by hand: the header is parsed from the mapped
 * file and every tensor is a slice of that mapping, so opening a multi-gigabyte model costs only its
 * header on the heap. Every count and length in the header is checked against the bytes that remain
 * before anything is allocated for it, and every tensor's data against the file's end before it is
 * sliced, so a damaged file gives a {@link ModelFormatException} and never a fault.
 *
 * <p>Layout (all little-endian): magic "GGUF", uint32 version, uint64 tensor count, uint64 KV count,
 * the KV pairs (string key, uint32 value type, value), the tensor infos (string name, uint32 n_dims,
 * n_dims × uint64 dims, uint32 ggml type, uint64 offset), padding to {@code general.alignment}
 * (default 32), then the data section that the offsets point into.
 */
public final class GgufFile implements ModelFile {

    public static final int DEFAULT_ALIGNMENT = 32;
    /** ggml's GGML_MAX_DIMS. */
    public static final int MAX_DIMS = 4;
    static final int MAGIC = 0x46554747; // "GGUF" read as a little-endian int
    /** Deeper nesting is never written by real tools; the bound keeps a hostile file from exhausting the stack. */
    private static final int MAX_ARRAY_NESTING = 16;
    /** Java arrays cannot be longer than about this. */
    private static final long MAX_JAVA_ARRAY = Integer.MAX_VALUE - 16;

    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Path path;
    private final Arena arena;
    private final int version;
    private final long alignment;
    private final long dataOffset;
    private final Map<String, Object> metadata;
    private final Map<String, GgufValueType> valueTypes;
    private final Map<String, GgufValueType> arrayElementTypes;
    private final List<GgufTensorInfo> tensorInfos;
    private final Map<String, WeightTensor> tensors;
    private boolean closed;

    private GgufFile(Path path, Arena arena, Parser p) {
        this.path = path;
        this.arena = arena;
        this.version = p.version;
        this.alignment = p.alignment;
        this.dataOffset = p.dataOffset;
        this.metadata = Collections.unmodifiableMap(p.metadata);
        this.valueTypes = Collections.unmodifiableMap(p.valueTypes);
        this.arrayElementTypes = Collections.unmodifiableMap(p.arrayElementTypes);
        this.tensorInfos = List.copyOf(p.infos);
        this.tensors = Collections.unmodifiableMap(p.tensors);
    }

    /** Maps and parses {@code path}; the mapping lives until {@link #close()}. */
    public static GgufFile open(Path path) throws IOException {
        if (Files.isDirectory(path)) throw new ModelFormatException(path, null, "is a directory, not a GGUF file");
        Arena arena = Arena.ofShared();
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ)) {
            long size = channel.size();
            MemorySegment file = size == 0
                    ? MemorySegment.ofArray(new byte[0])
                    : channel.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            Parser parser = new Parser(path, file);
            parser.parse();
            return new GgufFile(path, arena, parser);
        } catch (IOException | RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    @Override
    public Path path() {
        return path;
    }

    /** 2 or 3. */
    public int version() {
        return version;
    }

    /** {@code general.alignment}, or 32. */
    public long alignment() {
        return alignment;
    }

    /** File offset of the data section: tensor offsets are relative to it. */
    public long dataOffset() {
        return dataOffset;
    }

    @Override
    public Map<String, Object> metadata() {
        return metadata;
    }

    /** The stored type of metadata value {@code key}, or null if there is no such key. */
    public GgufValueType valueType(String key) {
        return valueTypes.get(key);
    }

    /** For an array value, the stored type of its elements; null for a scalar or a missing key. */
    public GgufValueType arrayElementType(String key) {
        return arrayElementTypes.get(key);
    }

    /** The tensor table, in file order. */
    public List<GgufTensorInfo> tensorInfos() {
        return tensorInfos;
    }

    @Override
    public Map<String, WeightTensor> tensors() {
        return tensors;
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            arena.close();
        }
    }

    @Override
    public String toString() {
        return path + " (GGUF v" + version + ", " + metadata.size() + " keys, " + tensors.size() + " tensors)";
    }

    /** Walks the header once; every read goes through {@link #need} so that no read passes the file's end. */
    private static final class Parser {
        final Path path;
        final MemorySegment file;
        final long size;
        long pos;

        int version;
        long alignment = DEFAULT_ALIGNMENT;
        long dataOffset;
        final Map<String, Object> metadata = new LinkedHashMap<>();
        final Map<String, GgufValueType> valueTypes = new LinkedHashMap<>();
        final Map<String, GgufValueType> arrayElementTypes = new LinkedHashMap<>();
        final List<GgufTensorInfo> infos = new ArrayList<>();
        final Map<String, WeightTensor> tensors = new LinkedHashMap<>();

        Parser(Path path, MemorySegment file) {
            this.path = path;
            this.file = file;
            this.size = file.byteSize();
        }

        void parse() {
            if (size < 4) throw fail(null, "truncated: " + size + " bytes, too short for the GGUF magic");
            int magic = file.get(U32, 0);
            if (magic != MAGIC) {
                throw fail(null, "bad magic " + describeMagic() + ": not a GGUF file");
            }
            pos = 4;
            version = u32("the version");
            if (version != 2 && version != 3) {
                if (version == 1) throw fail(null, "GGUF version 1 is not supported (only versions 2 and 3 are)");
                if (Integer.reverseBytes(version) == 2 || Integer.reverseBytes(version) == 3) {
                    throw fail(null, "big-endian GGUF is not supported");
                }
                throw fail(null, "unknown GGUF version " + Integer.toUnsignedString(version)
                        + " (only versions 2 and 3 are supported)");
            }
            long tensorCount = u64("the tensor count");
            long kvCount = u64("the metadata count");
            // The smallest KV pair is an empty key (8), a type (4) and a one-byte value; the smallest
            // tensor info an empty name (8), n_dims (4), one dim (8), type (4) and offset (8).
            checkCount(kvCount, 13, "metadata key/value pairs");
            checkCount(tensorCount, 32, "tensors");
            for (long i = 0; i < kvCount; i++) readKeyValue(i);
            readAlignment();
            for (long i = 0; i < tensorCount; i++) readTensorInfo(i);
            dataOffset = alignUp(pos, alignment);
            for (GgufTensorInfo info : infos) mapTensor(info);
        }

        private String describeMagic() {
            byte[] b = new byte[4];
            MemorySegment.copy(file, ValueLayout.JAVA_BYTE, 0, b, 0, 4);
            StringBuilder hex = new StringBuilder("0x");
            StringBuilder text = new StringBuilder();
            for (byte x : b) {
                hex.append(String.format("%02x", x & 0xff));
                text.append(x >= 0x20 && x < 0x7f ? (char) x : '.');
            }
            return hex + " (\"" + text + "\")";
        }

        private void checkCount(long count, long minBytesEach, String what) {
            long remaining = size - pos;
            if (count < 0 || count > remaining / minBytesEach) {
                throw fail(null, "header claims " + Long.toUnsignedString(count) + " " + what
                        + ", more than the " + remaining + " remaining bytes can hold (truncated or corrupt)");
            }
        }

        private void readKeyValue(long index) {
            String key = string("the key of metadata pair #" + index, null);
            int typeId = u32("the value type of metadata key '" + key + "'");
            GgufValueType type = GgufValueType.byId(Integer.toUnsignedLong(typeId));
            if (type == null) {
                throw fail(null, "metadata key '" + key + "' has unknown value type " + Integer.toUnsignedString(typeId));
            }
            Object value = type == GgufValueType.ARRAY ? readArray(key, 0) : readScalar(key, type);
            if (metadata.putIfAbsent(key, value) != null) throw fail(null, "duplicate metadata key '" + key + "'");
            valueTypes.put(key, type);
        }

        private Object readScalar(String key, GgufValueType type) {
            String what = "the value of metadata key '" + key + "'";
            return switch (type) {
                case UINT8 -> (long) (u8(what) & 0xff);
                case INT8 -> (long) u8(what);
                case UINT16 -> (long) (u16(what) & 0xffff);
                case INT16 -> (long) u16(what);
                case UINT32 -> Integer.toUnsignedLong(u32(what));
                case INT32 -> (long) u32(what);
                case UINT64, INT64 -> u64(what);
                case FLOAT32 -> f32(what);
                case FLOAT64 -> f64(what);
                case BOOL -> u8(what) != 0;
                case STRING -> string(what, null);
                case ARRAY -> throw new AssertionError("arrays are read by readArray");
            };
        }

        private Object readArray(String key, int depth) {
            if (depth >= MAX_ARRAY_NESTING) {
                throw fail(null, "metadata key '" + key + "' nests arrays more than " + MAX_ARRAY_NESTING + " deep");
            }
            int typeId = u32("the element type of metadata array '" + key + "'");
            GgufValueType type = GgufValueType.byId(Integer.toUnsignedLong(typeId));
            if (type == null) {
                throw fail(null, "metadata array '" + key + "' has unknown element type " + Integer.toUnsignedString(typeId));
            }
            long n = u64("the length of metadata array '" + key + "'");
            long remaining = size - pos;
            if (n < 0 || n > remaining / type.minBytes) {
                throw fail(null, "metadata array '" + key + "' claims " + Long.toUnsignedString(n) + " elements of type "
                        + type + ", more than the " + remaining + " remaining bytes can hold (truncated or corrupt)");
            }
            if (n > MAX_JAVA_ARRAY) throw fail(null, "metadata array '" + key + "' has " + n + " elements, too many to load");
            int count = (int) n;
            if (depth == 0) arrayElementTypes.put(key, type);
            long bytes = (long) count * type.minBytes;
            return switch (type) {
                case UINT8, INT8, BOOL -> {
                    byte[] a = new byte[count];
                    MemorySegment.copy(file, ValueLayout.JAVA_BYTE, pos, a, 0, count);
                    pos += bytes;
                    if (type != GgufValueType.BOOL) yield a;
                    boolean[] flags = new boolean[count];
                    for (int i = 0; i < count; i++) flags[i] = a[i] != 0;
                    yield flags;
                }
                case UINT16, INT16 -> {
                    short[] a = new short[count];
                    MemorySegment.copy(file, U16, pos, a, 0, count);
                    pos += bytes;
                    yield a;
                }
                case UINT32, INT32 -> {
                    int[] a = new int[count];
                    MemorySegment.copy(file, U32, pos, a, 0, count);
                    pos += bytes;
                    yield a;
                }
                case UINT64, INT64 -> {
                    long[] a = new long[count];
                    MemorySegment.copy(file, U64, pos, a, 0, count);
                    pos += bytes;
                    yield a;
                }
                case FLOAT32 -> {
                    float[] a = new float[count];
                    MemorySegment.copy(file, F32, pos, a, 0, count);
                    pos += bytes;
                    yield a;
                }
                case FLOAT64 -> {
                    double[] a = new double[count];
                    MemorySegment.copy(file, F64, pos, a, 0, count);
                    pos += bytes;
                    yield a;
                }
                case STRING -> {
                    String[] a = new String[count];
                    for (int i = 0; i < count; i++) a[i] = string("element " + i + " of metadata array '" + key + "'", null);
                    yield a;
                }
                case ARRAY -> {
                    Object[] a = new Object[count];
                    for (int i = 0; i < count; i++) a[i] = readArray(key, depth + 1);
                    yield Collections.unmodifiableList(Arrays.asList(a));
                }
            };
        }

        private void readAlignment() {
            Object value = metadata.get("general.alignment");
            if (value == null) return;
            if (!(value instanceof Long a)) throw fail(null, "general.alignment is a " + valueTypes.get("general.alignment") + ", not an integer");
            if (a <= 0 || (a & (a - 1)) != 0 || a > (1 << 30)) {
                throw fail(null, "general.alignment = " + Long.toUnsignedString(a) + " is not a power of two up to 2^30");
            }
            alignment = a;
        }

        private void readTensorInfo(long index) {
            String name = string("the name of tensor #" + index, null);
            int nDims = u32("the dimension count", name);
            if (nDims < 1 || nDims > MAX_DIMS) {
                throw fail(name, "has " + Integer.toUnsignedString(nDims) + " dimensions; GGUF allows 1 to " + MAX_DIMS);
            }
            long[] shape = new long[nDims];
            long elements = 1;
            for (int d = 0; d < nDims; d++) {
                shape[d] = u64("dimension " + d, name);
                if (shape[d] < 0) throw fail(name, "dimension " + d + " is " + Long.toUnsignedString(shape[d]) + ", beyond 2^63");
                try {
                    elements = Math.multiplyExact(elements, shape[d]);
                } catch (ArithmeticException overflow) {
                    throw fail(name, "shape " + Arrays.toString(shape) + " has more than 2^63 elements");
                }
            }
            int typeId = u32("the type", name);
            GgmlType type = GgmlType.byId(typeId);
            if (type == null) throw fail(name, "has unknown ggml type id " + Integer.toUnsignedString(typeId));
            long offset = u64("the data offset", name);
            if (shape[0] % type.blockSize != 0) {
                throw fail(name, "row length " + shape[0] + " is not a multiple of " + type + "'s block size " + type.blockSize);
            }
            if (elements / type.blockSize > Long.MAX_VALUE / type.blockBytes) {
                throw fail(name, "shape " + Arrays.toString(shape) + " of " + type + " needs more than 2^63 bytes");
            }
            if (shape[0] > Integer.MAX_VALUE || elements / Math.max(1, shape[0]) > Integer.MAX_VALUE) {
                throw fail(name, "shape " + Arrays.toString(shape) + " has rows or columns beyond 2^31");
            }
            if (offset < 0) throw fail(name, "data offset " + Long.toUnsignedString(offset) + " is beyond 2^63");
            if (offset % alignment != 0) {
                throw fail(name, "data offset " + Long.toUnsignedString(offset) + " is not a multiple of the alignment " + alignment);
            }
            if (tensors.containsKey(name)) {
                throw fail(name, "appears twice in the tensor table");
            }
            infos.add(new GgufTensorInfo(name, type, shape, offset, type.bytesFor(elements)));
            tensors.put(name, null); // reserves the name and the order; mapTensor fills it in
        }

        private void mapTensor(GgufTensorInfo info) {
            long available = Math.max(0, size - dataOffset);
            if (info.offset() > available || info.byteSize() > available - info.offset()) {
                throw fail(info.name(), "data [" + (dataOffset + info.offset()) + ", "
                        + (dataOffset + info.offset() + info.byteSize()) + ") lies beyond the end of the file at "
                        + size + " (truncated or corrupt)");
            }
            MemorySegment data = file.asSlice(dataOffset + info.offset(), info.byteSize());
            tensors.put(info.name(), new WeightTensor(info.name(), info.type(), info.shape(), data));
        }

        // ---- primitive reads ----

        private void need(long n, String what, String tensor) {
            if (n > size - pos) {
                throw fail(tensor, "truncated: " + what + " needs " + n + " bytes at offset " + pos
                        + " but the file ends at " + size);
            }
        }

        private byte u8(String what) {
            need(1, what, null);
            return file.get(ValueLayout.JAVA_BYTE, pos++);
        }

        private short u16(String what) {
            need(2, what, null);
            short v = file.get(U16, pos);
            pos += 2;
            return v;
        }

        private int u32(String what) {
            return u32(what, null);
        }

        private int u32(String what, String tensor) {
            need(4, what, tensor);
            int v = file.get(U32, pos);
            pos += 4;
            return v;
        }

        private long u64(String what) {
            return u64(what, null);
        }

        private long u64(String what, String tensor) {
            need(8, what, tensor);
            long v = file.get(U64, pos);
            pos += 8;
            return v;
        }

        private float f32(String what) {
            need(4, what, null);
            float v = file.get(F32, pos);
            pos += 4;
            return v;
        }

        private double f64(String what) {
            need(8, what, null);
            double v = file.get(F64, pos);
            pos += 8;
            return v;
        }

        private String string(String what, String tensor) {
            long length = u64(what, tensor);
            long remaining = size - pos;
            if (length < 0 || length > remaining) {
                throw fail(tensor, "string length " + Long.toUnsignedString(length) + " of " + what + " at offset " + (pos - 8)
                        + " exceeds the " + remaining + " remaining bytes (truncated or corrupt)");
            }
            if (length > MAX_JAVA_ARRAY) throw fail(tensor, "string length " + length + " of " + what + " is too long to load");
            byte[] bytes = new byte[(int) length];
            MemorySegment.copy(file, ValueLayout.JAVA_BYTE, pos, bytes, 0, bytes.length);
            pos += length;
            return new String(bytes, StandardCharsets.UTF_8);
        }

        private ModelFormatException fail(String tensor, String problem) {
            return new ModelFormatException(path, tensor, problem);
        }
    }

    static long alignUp(long offset, long alignment) {
        return (offset + alignment - 1) / alignment * alignment;
    }
}
