package dev.kvserve.bench;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.runtime.ModelFile;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.Map;

/**
 * What a model's weights cost: total bytes and parameters (llama-bench's size and params columns),
 * the type most of the bytes are in, and the bytes one decode step must read.
 *
 * <p>A decode step reads every layer tensor, the final norm and the output head in full, but only
 * one row of the token embedding (a lookup), unless the head is the embedding itself (tied).
 * Activations and the KV cache are not counted: for tg from an empty cache they are tiny next to
 * the weights, and this is the figure to hold against the machine's memory bandwidth.
 */
public record ModelWeights(long bytes, long params, GgmlType mainType, long bytesPerDecodedToken) {

    public static ModelWeights of(Path model) {
        try (ModelFile file = ModelFile.open(model)) {
            return of(file.tensors());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read model " + model + ": " + e.getMessage(), e);
        }
    }

    public static ModelWeights of(Map<String, WeightTensor> tensors) {
        long bytes = 0, params = 0, perToken = 0;
        Map<GgmlType, Long> byType = new EnumMap<>(GgmlType.class);
        boolean tied = !tensors.containsKey("output.weight");
        for (WeightTensor t : tensors.values()) {
            long size = t.data().byteSize();
            bytes += size;
            if (!t.name().equals("rope_freqs.weight")) params += t.elements(); // not trained: model cards leave it out
            byType.merge(t.type(), size, Long::sum);
            if (t.name().equals("token_embd.weight")) perToken += tied ? size : t.rowBytes();
            else if (!t.name().equals("rope_freqs.weight")) perToken += size;
        }
        GgmlType main = byType.entrySet().stream().max(Map.Entry.comparingByValue()).map(Map.Entry::getKey).orElse(null);
        return new ModelWeights(bytes, params, main, perToken);
    }

    /** llama-bench style: "1.22 GiB", "543.21 MiB". */
    public static String size(long bytes) {
        if (bytes >= 1L << 30) return String.format("%.2f GiB", bytes / (double) (1L << 30));
        if (bytes >= 1L << 20) return String.format("%.2f MiB", bytes / (double) (1L << 20));
        return String.format("%.2f KiB", bytes / 1024.0);
    }

    /** llama-bench style: "1.24 B", "134.52 M", "0.29 M". */
    public static String count(long n) {
        if (n >= 1_000_000_000L) return String.format("%.2f B", n / 1e9);
        return String.format("%.2f M", n / 1e6);
    }
}
