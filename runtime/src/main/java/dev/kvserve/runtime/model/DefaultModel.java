package dev.kvserve.runtime.model;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * The model the product ships (stories260K, 1.2 MB), so that {@code kvserve serve} works on a fresh
 * machine. It travels inside the runtime jar; model files are memory-mapped, so it is copied once
 * to a file under the temp directory (keyed by size, re-copied if it is missing or damaged).
 */
public final class DefaultModel {
    public static final String NAME = "stories260K";
    private static final String RESOURCE = "/dev/kvserve/runtime/models/stories260K.gguf";
    private static final long SIZE = 1_185_376L;

    private DefaultModel() {}

    public static synchronized Path path() {
        Path dir = Path.of(System.getProperty("java.io.tmpdir"), "kvserve-" + System.getProperty("user.name", "user"));
        Path file = dir.resolve(NAME + ".gguf");
        try {
            if (Files.isRegularFile(file) && Files.size(file) == SIZE) return file;
            Files.createDirectories(dir);
            try (InputStream in = DefaultModel.class.getResourceAsStream(RESOURCE)) {
                if (in == null) throw new IllegalStateException("the embedded model " + RESOURCE + " is missing from the classpath");
                Path tmp = Files.createTempFile(dir, NAME, ".part");
                Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
                Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            }
            return file;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot extract the embedded default model to " + file, e);
        }
    }
}
