package dev.kvserve.runtime.tokenizer;

import dev.kvserve.runtime.gguf.GgufFile;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** Locates the shared models and texts, and reads GGUF metadata for the tokenizer tests. */
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

    /** The GGUF metadata as the runtime's reader gives it (String[] / int[] / float[] arrays, Long integers). */
    static Map<String, Object> ggufMetadata(Path file) throws IOException {
        try (GgufFile gguf = GgufFile.open(file)) {
            return new HashMap<>(gguf.metadata());
        }
    }
}
