package dev.kvserve.bench;

import java.nio.file.Files;
import java.nio.file.Path;

/** The shared models and texts, found from the repository root surefire passes as kvserve.root. */
final class Shared {

    private Shared() {}

    static Path file(String relative) {
        String root = System.getProperty("kvserve.root");
        if (root == null) throw new IllegalStateException("system property kvserve.root is not set (run through Maven)");
        // A worktree sits one level deeper than the main checkout: take the nearest shared/ above.
        for (Path p = Path.of(root).toAbsolutePath().normalize(); p != null; p = p.getParent()) {
            Path candidate = p.resolve("shared").resolve(relative);
            if (Files.exists(candidate)) return candidate;
        }
        throw new IllegalStateException("no shared/" + relative + " above " + root);
    }

    static Path stories260K() {
        return file("models/stories260K.gguf");
    }

    static Path tinyStoriesText() {
        return file("data/tinystories_val.txt");
    }
}
