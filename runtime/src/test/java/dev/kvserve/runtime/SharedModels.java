package dev.kvserve.runtime;

import java.nio.file.Files;
import java.nio.file.Path;

/** Locates /work/shared/models-style material relative to the repository root that surefire passes. */
public final class SharedModels {

    private SharedModels() {}

    /**
     * {@code <root>/../shared/models}, or the nearest {@code shared/models} further up: a checkout in a
     * nested worktree directory sits one level deeper than the main one.
     */
    public static Path dir() {
        String root = System.getProperty("kvserve.root");
        if (root == null) throw new IllegalStateException("system property kvserve.root is not set (run through Maven)");
        for (Path p = Path.of(root).toAbsolutePath().normalize(); p != null; p = p.getParent()) {
            Path candidate = p.resolve("shared").resolve("models");
            if (Files.isDirectory(candidate)) return candidate;
        }
        throw new IllegalStateException("no shared/models directory above " + root);
    }

    public static Path file(String name) {
        Path p = dir().resolve(name);
        if (!Files.exists(p)) throw new IllegalStateException("shared model file missing: " + p);
        return p;
    }
}
