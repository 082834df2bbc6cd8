package dev.kvserve.tests;

import java.nio.file.Files;
import java.nio.file.Path;

/** Where the shared models and texts are: ../shared beside the repository. */
final class SharedFiles {
    private SharedFiles() {}

    static Path root() {
        String prop = System.getProperty("kvserve.root", ".");
        Path repo = Path.of(prop).toAbsolutePath().normalize();
        for (Path p = repo; p != null; p = p.getParent()) {
            Path shared = p.resolveSibling("shared");
            if (Files.isDirectory(shared.resolve("models"))) return shared;
            if (Files.isDirectory(p.resolve("shared/models"))) return p.resolve("shared");
        }
        throw new IllegalStateException("../shared (models and data) not found next to " + repo);
    }

    static Path model(String name) {
        return root().resolve("models").resolve(name);
    }

    static Path data(String name) {
        return root().resolve("data").resolve(name);
    }
}
