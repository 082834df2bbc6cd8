package dev.kvserve.runtime.safetensors;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.core.StreamReadFeature;
import dev.kvserve.kernels.GgmlType;
import dev.kvserve.runtime.ModelFormatException;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One {@code .safetensors} file: an 8-byte little-endian header length, a JSON header mapping each
 * tensor name to its dtype, row-major shape and byte range, then the raw data. The file is
 * memory-mapped and each tensor is a slice of the mapping. Names and shapes are Hugging Face's here;
 * {@link HuggingFaceModel} turns them into GGUF's.
 */
public final class SafetensorsFile implements AutoCloseable {

    /** The safetensors library refuses larger headers too. */
    public static final long MAX_HEADER_BYTES = 100L << 20;

    /**
     * A tensor as stored.
     *
     * @param dtype safetensors' dtype name (F32, F16, BF16, I64, ...)
     * @param shape row-major, outermost dimension first (the reverse of ggml order)
     * @param type  the ggml type holding the same bits, or null when ggml has none (U8, BOOL, F8_*)
     */
    public record Tensor(String name, String dtype, long[] shape, GgmlType type, MemorySegment data) {
        public Tensor {
            shape = shape.clone();
        }

        @Override
        public long[] shape() {
            return shape.clone();
        }
    }

    static final ObjectMapper JSON = JsonMapper.builder().enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION).build();

    private final Path path;
    private final Arena arena;
    private final boolean ownsArena;
    private final Map<String, String> metadata;
    private final Map<String, Tensor> tensors;

    private SafetensorsFile(Path path, Arena arena, boolean ownsArena, Map<String, String> metadata, Map<String, Tensor> tensors) {
        this.path = path;
        this.arena = arena;
        this.ownsArena = ownsArena;
        this.metadata = Collections.unmodifiableMap(metadata);
        this.tensors = Collections.unmodifiableMap(tensors);
    }

    /** Maps {@code path} into an arena of its own, released by {@link #close()}. */
    public static SafetensorsFile open(Path path) throws IOException {
        Arena arena = Arena.ofShared();
        try {
            return open(path, arena, true);
        } catch (IOException | RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    /** Maps {@code path} into {@code arena}, which the caller closes. */
    static SafetensorsFile open(Path path, Arena arena) throws IOException {
        return open(path, arena, false);
    }

    private static SafetensorsFile open(Path path, Arena arena, boolean ownsArena) throws IOException {
        if (Files.isDirectory(path)) throw new ModelFormatException(path, null, "is a directory, not a safetensors file");
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ)) {
            long size = channel.size();
            if (size < 8) throw new ModelFormatException(path, null, "truncated: " + size + " bytes, too short for the header length");
            MemorySegment file = channel.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long headerBytes = file.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0);
            if (headerBytes < 2 || headerBytes > size - 8) {
                throw new ModelFormatException(path, null, "header length " + Long.toUnsignedString(headerBytes)
                        + " does not fit in the file of " + size + " bytes (truncated or not safetensors)");
            }
            if (headerBytes > MAX_HEADER_BYTES) {
                throw new ModelFormatException(path, null, "header length " + headerBytes + " is over the 100 MiB limit");
            }
            byte[] header = new byte[(int) headerBytes];
            MemorySegment.copy(file, ValueLayout.JAVA_BYTE, 8, header, 0, header.length);
            JsonNode root;
            try {
                root = JSON.readTree(header);
            } catch (JacksonException e) {
                throw new ModelFormatException(path, null, "header is not valid JSON: " + e.getOriginalMessage(), e);
            }
            if (root == null || !root.isObject()) throw new ModelFormatException(path, null, "header is not a JSON object");
            long dataStart = 8 + headerBytes;
            MemorySegment data = file.asSlice(dataStart);
            Map<String, String> metadata = new LinkedHashMap<>();
            Map<String, Tensor> tensors = new LinkedHashMap<>();
            for (Map.Entry<String, JsonNode> field : root.properties()) {
                if (field.getKey().equals("__metadata__")) {
                    readMetadata(path, field.getValue(), metadata);
                } else {
                    tensors.put(field.getKey(), readTensor(path, field.getKey(), field.getValue(), data));
                }
            }
            return new SafetensorsFile(path, arena, ownsArena, metadata, tensors);
        }
    }

    private static void readMetadata(Path path, JsonNode node, Map<String, String> metadata) {
        if (!node.isObject()) throw new ModelFormatException(path, null, "__metadata__ is not a JSON object");
        for (Map.Entry<String, JsonNode> e : node.properties()) {
            if (!e.getValue().isTextual()) {
                throw new ModelFormatException(path, null, "__metadata__ value of '" + e.getKey() + "' is not a string");
            }
            metadata.put(e.getKey(), e.getValue().textValue());
        }
    }

    private static Tensor readTensor(Path path, String name, JsonNode node, MemorySegment data) {
        if (!node.isObject()) throw new ModelFormatException(path, name, "header entry is not a JSON object");
        JsonNode dtypeNode = node.get("dtype");
        if (dtypeNode == null || !dtypeNode.isTextual()) throw new ModelFormatException(path, name, "has no dtype string");
        String dtype = dtypeNode.textValue();
        int elementBytes = elementBytes(dtype);
        if (elementBytes < 0) throw new ModelFormatException(path, name, "has unknown dtype " + dtype);
        long[] shape = longs(path, name, node.get("shape"), "shape", -1);
        long[] offsets = longs(path, name, node.get("data_offsets"), "data_offsets", 2);
        long elements = 1;
        for (long d : shape) {
            try {
                elements = Math.multiplyExact(elements, d);
            } catch (ArithmeticException overflow) {
                throw new ModelFormatException(path, name, "shape " + Arrays.toString(shape) + " has more than 2^63 elements");
            }
        }
        long begin = offsets[0];
        long end = offsets[1];
        long available = data.byteSize();
        if (begin > end || end > available) {
            throw new ModelFormatException(path, name, "data_offsets [" + begin + ", " + end + ") lie outside the "
                    + available + " bytes of data (truncated or corrupt)");
        }
        if (elements > Long.MAX_VALUE / elementBytes || elements * elementBytes != end - begin) {
            throw new ModelFormatException(path, name, "shape " + Arrays.toString(shape) + " of " + dtype + " needs "
                    + (elements > Long.MAX_VALUE / elementBytes ? "more than 2^63" : String.valueOf(elements * elementBytes))
                    + " bytes but data_offsets give " + (end - begin));
        }
        long rowLength = shape.length == 0 ? 1 : shape[shape.length - 1];
        if (rowLength > Integer.MAX_VALUE || (rowLength > 0 && elements / rowLength > Integer.MAX_VALUE)) {
            throw new ModelFormatException(path, name, "shape " + Arrays.toString(shape) + " has rows or columns beyond 2^31");
        }
        return new Tensor(name, dtype, shape, ggmlType(dtype), data.asSlice(begin, end - begin));
    }

    private static long[] longs(Path path, String name, JsonNode node, String field, int requiredLength) {
        if (node == null || !node.isArray() || (requiredLength >= 0 && node.size() != requiredLength)) {
            throw new ModelFormatException(path, name, field + " is not an array"
                    + (requiredLength >= 0 ? " of " + requiredLength + " integers" : " of integers"));
        }
        long[] values = new long[node.size()];
        for (int i = 0; i < values.length; i++) {
            JsonNode v = node.get(i);
            if (!v.isIntegralNumber() || !v.canConvertToLong() || v.longValue() < 0) {
                throw new ModelFormatException(path, name, field + "[" + i + "] = " + v + " is not a non-negative 64-bit integer");
            }
            values[i] = v.longValue();
        }
        return values;
    }

    /** Bytes per element of a safetensors dtype, or -1 for a dtype this reader does not know. */
    static int elementBytes(String dtype) {
        return switch (dtype) {
            case "F64", "I64", "U64" -> 8;
            case "F32", "I32", "U32" -> 4;
            case "F16", "BF16", "I16", "U16" -> 2;
            case "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2" -> 1;
            default -> -1;
        };
    }

    /** The ggml type with the same bit layout, or null. */
    static GgmlType ggmlType(String dtype) {
        return switch (dtype) {
            case "F32" -> GgmlType.F32;
            case "F16" -> GgmlType.F16;
            case "BF16" -> GgmlType.BF16;
            case "F64" -> GgmlType.F64;
            case "I8" -> GgmlType.I8;
            case "I16" -> GgmlType.I16;
            case "I32" -> GgmlType.I32;
            case "I64" -> GgmlType.I64;
            default -> null;
        };
    }

    public Path path() {
        return path;
    }

    /** The {@code __metadata__} strings (e.g. {@code format=pt}, or aliases of tied tensors). */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** Tensors under their Hugging Face names, in header order. */
    public Map<String, Tensor> tensors() {
        return tensors;
    }

    @Override
    public void close() {
        if (ownsArena && arena.scope().isAlive()) arena.close();
    }
}
