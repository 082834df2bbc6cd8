package dev.kvserve.runtime;

import java.nio.file.Path;

/**
 * A model file (GGUF, safetensors, config.json) that cannot be used as it stands: truncated,
 * malformed, inconsistent, or asking for something KVServe does not implement. Unchecked because
 * no caller can repair the file; the message names the file, the tensor when one is involved, and
 * the problem, so that a user can act on it without a debugger.
 */
public class ModelFormatException extends RuntimeException {

    private final Path file;
    private final String tensor;

    public ModelFormatException(Path file, String tensor, String problem) {
        this(file, tensor, problem, null);
    }

    public ModelFormatException(Path file, String tensor, String problem, Throwable cause) {
        super(file + (tensor != null ? ": tensor '" + tensor + "'" : "") + ": " + problem, cause);
        this.file = file;
        this.tensor = tensor;
    }

    /** The file (or checkpoint directory) that is at fault. */
    public Path file() {
        return file;
    }

    /** The tensor at fault, or null when the problem is not about one tensor. */
    public String tensor() {
        return tensor;
    }
}
