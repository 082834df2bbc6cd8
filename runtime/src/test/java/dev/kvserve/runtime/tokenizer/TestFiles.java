package dev.kvserve.runtime.tokenizer;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Locates /work/shared and reads just the metadata section of a GGUF file (test-only helper). */
final class TestFiles {
    private TestFiles() {
    }

    /** ../shared from the repository root; a worktree under wt/ sits one level deeper. */
    static Path shared() {
        String override = System.getProperty("kvserve.shared");
        if (override != null) {
            return Path.of(override);
        }
        Path root = Path.of(System.getProperty("kvserve.root", ".")).toAbsolutePath();
        for (Path candidate : List.of(root.resolve("../shared"), root.resolve("../../shared"))) {
            if (Files.isDirectory(candidate.resolve("models"))) {
                return candidate.normalize();
            }
        }
        throw new IllegalStateException("shared models not found next to " + root + " (set -Dkvserve.shared)");
    }

    static Path model(String name) {
        return shared().resolve("models").resolve(name);
    }

    static String text(String name) throws IOException {
        return Files.readString(shared().resolve("data").resolve(name), StandardCharsets.UTF_8);
    }

    /**
     * GGUF v2/v3 key-value pairs. Strings arrays come back as List, numeric arrays as primitive
     * arrays and uint32 scalars as Long, so the tokenizer's metadata adapter sees mixed shapes.
     */
    static Map<String, Object> ggufMetadata(Path file) throws IOException {
        ByteBuffer in = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
        if (in.getInt() != 0x46554747) {
            throw new IOException(file + " is not a GGUF file");
        }
        in.getInt(); // version
        in.getLong(); // tensor count
        long kvCount = in.getLong();
        Map<String, Object> metadata = new LinkedHashMap<>();
        for (long i = 0; i < kvCount; i++) {
            String key = string(in);
            metadata.put(key, value(in, in.getInt()));
        }
        return metadata;
    }

    private static String string(ByteBuffer in) {
        byte[] bytes = new byte[(int) in.getLong()];
        in.get(bytes);
        return new String(bytes, StandardCharsets.UTF_8);
    }

    private static Object value(ByteBuffer in, int type) {
        return switch (type) {
            case 0 -> (int) in.get() & 0xFF;
            case 1 -> (int) in.get();
            case 2 -> in.getShort() & 0xFFFF;
            case 3 -> (int) in.getShort();
            case 4 -> in.getInt() & 0xFFFFFFFFL;
            case 5 -> in.getInt();
            case 6 -> in.getFloat();
            case 7 -> in.get() != 0;
            case 8 -> string(in);
            case 9 -> array(in);
            case 10, 11 -> in.getLong();
            case 12 -> in.getDouble();
            default -> throw new IllegalStateException("GGUF value type " + type);
        };
    }

    private static Object array(ByteBuffer in) {
        int elementType = in.getInt();
        int length = (int) in.getLong();
        if (elementType == 6) {
            float[] values = new float[length];
            for (int i = 0; i < length; i++) values[i] = in.getFloat();
            return values;
        }
        if (elementType == 5) {
            int[] values = new int[length];
            for (int i = 0; i < length; i++) values[i] = in.getInt();
            return values;
        }
        List<Object> values = new ArrayList<>(length);
        for (int i = 0; i < length; i++) values.add(value(in, elementType));
        return values;
    }
}
