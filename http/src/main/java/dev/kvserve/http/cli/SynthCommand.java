package dev.kvserve.http.cli;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.runtime.gguf.SyntheticModels;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "synth", mixinStandardHelpOptions = true,
        description = {"Write a GGUF with seeded random weights and a real model's shapes (like vLLM's dummy weights).",
                "Its outputs are meaningless but its cost is real: use it for speed work; llama.cpp loads it too."})
public final class SynthCommand implements Callable<Integer> {

    @Option(names = "--like", required = true, paramLabel = "PRESET",
            description = "Shape preset: ${COMPLETION-CANDIDATES}.", completionCandidates = Presets.class)
    String like;

    @Option(names = "--type", defaultValue = "q8_0", paramLabel = "TYPE",
            description = "Weight type: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q2_k, q3_k, q4_k, q5_k, q6_k; "
                    + "K-type matrices whose rows are not whole 256-blocks fall back as llama-quantize's do (q4_k → q5_0) "
                    + "(default: ${DEFAULT-VALUE}).")
    String type;

    @Option(names = {"-o", "--output"}, required = true, paramLabel = "FILE", description = "GGUF file to write.")
    Path output;

    @Option(names = "--seed", defaultValue = "42", description = "Random seed (default: ${DEFAULT-VALUE}).")
    long seed;

    static final class Presets extends java.util.ArrayList<String> {
        Presets() { super(SyntheticModels.presetNames()); }
    }

    @Override
    public Integer call() throws Exception {
        GgmlType t;
        try {
            t = GgmlType.valueOf(type.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("unknown --type '" + type + "'; use f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q2_k, q3_k, q4_k, q5_k or q6_k");
        }
        if (!SyntheticModels.canWrite(t)) throw new IllegalArgumentException("--type " + type + " cannot be written");
        var spec = SyntheticModels.preset(like);
        System.err.printf("writing %s (%s, %.1fM parameters) to %s%n", like, t, spec.parameterCount() / 1e6, output);
        long t0 = System.nanoTime();
        SyntheticModels.write(output, spec, t, seed);
        System.err.printf("done in %.1fs, %,d bytes%n", (System.nanoTime() - t0) / 1e9, java.nio.file.Files.size(output));
        return 0;
    }
}
