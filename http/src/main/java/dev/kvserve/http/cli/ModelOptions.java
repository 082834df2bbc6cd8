package dev.kvserve.http.cli;

import dev.kvserve.runtime.model.DefaultModel;
import java.nio.file.Files;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** Options every command that runs a model shares. */
public final class ModelOptions {

    @Option(names = {"-m", "--model"}, paramLabel = "PATH",
            description = "GGUF file or Hugging Face checkpoint directory (default: the embedded stories260K).")
    Path model;

    @Option(names = {"-t", "--threads"}, paramLabel = "N",
            description = "CPU threads (default: all cores, ${DEFAULT-VALUE} means auto).", defaultValue = "0")
    int threads;

    @Option(names = "--backend", paramLabel = "auto|cpu|cuda", defaultValue = "auto",
            description = "Compute backend (default: ${DEFAULT-VALUE}: the CPU until attention over the paged cache runs on the GPU; cuda runs the matmuls and row ops there).")
    String backend;

    public Path modelPath() {
        if (model == null) return DefaultModel.path();
        if (!Files.exists(model)) throw new IllegalArgumentException("model " + model + " does not exist");
        return model;
    }

    public int threads() {
        if (threads < 0) throw new IllegalArgumentException("--threads must be >= 0, got " + threads);
        return threads == 0 ? Runtime.getRuntime().availableProcessors() : threads;
    }

    public String backend() {
        return backend;
    }
}
