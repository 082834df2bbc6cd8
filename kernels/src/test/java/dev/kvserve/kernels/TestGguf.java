package dev.kvserve.kernels;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Just enough of a GGUF reader for the kernel tests to pull tensors out of the shared models
 * (the real reader lives in runtime, which kernels must not depend on).
 */
final class TestGguf {
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    final Map<String, WeightTensor> tensors = new LinkedHashMap<>();
    private final MemorySegment file;
    private long pos;

    /** ../shared/models beside the repository root (or beside the worktrees' parent, for a worktree). */
    static Path sharedModels() {
        Path root = Path.of(System.getProperty("kvserve.root", ".")).toAbsolutePath().normalize();
        for (Path p = root; p != null; p = p.getParent()) {
            Path candidate = p.resolveSibling("shared").resolve("models");
            if (java.nio.file.Files.isDirectory(candidate)) return candidate;
        }
        return root.resolveSibling("shared").resolve("models");
    }

    TestGguf(Path path, Arena arena) throws IOException {
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            file = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size(), arena);
        }
        if (u32() != 0x46554747) throw new IOException(path + " is not GGUF");
        u32(); // version
        long nTensors = u64();
        long nKv = u64();
        long alignment = 32;
        for (long i = 0; i < nKv; i++) {
            String key = str();
            int type = u32();
            if (key.equals("general.alignment")) alignment = u32();
            else skipValue(type);
        }
        record Info(String name, long[] shape, int type, long offset) {}
        Info[] infos = new Info[(int) nTensors];
        for (int i = 0; i < nTensors; i++) {
            String name = str();
            int nd = u32();
            long[] shape = new long[nd];
            for (int d = 0; d < nd; d++) shape[d] = u64();
            infos[i] = new Info(name, shape, u32(), u64());
        }
        long dataStart = (pos + alignment - 1) / alignment * alignment;
        for (Info info : infos) {
            GgmlType type = GgmlType.byId(info.type);
            long elements = 1;
            for (long d : info.shape) elements *= d;
            MemorySegment data = file.asSlice(dataStart + info.offset, type.bytesFor(elements));
            tensors.put(info.name, new WeightTensor(info.name, type, info.shape, data));
        }
    }

    WeightTensor tensor(String name) {
        WeightTensor t = tensors.get(name);
        if (t == null) throw new IllegalArgumentException("no tensor " + name);
        return t;
    }

    private int u32() { int v = file.get(U32, pos); pos += 4; return v; }
    private long u64() { long v = file.get(U64, pos); pos += 8; return v; }

    private String str() {
        int len = (int) u64();
        byte[] b = file.asSlice(pos, len).toArray(ValueLayout.JAVA_BYTE);
        pos += len;
        return new String(b, StandardCharsets.UTF_8);
    }

    private void skipValue(int type) {
        switch (type) {
            case 0, 1, 7 -> pos += 1;
            case 2, 3 -> pos += 2;
            case 4, 5, 6 -> pos += 4;
            case 10, 11, 12 -> pos += 8;
            case 8 -> str();
            case 9 -> {
                int elemType = u32();
                long n = u64();
                for (long i = 0; i < n; i++) skipValue(elemType);
            }
            default -> throw new IllegalStateException("GGUF value type " + type);
        }
    }
}
