package dev.kvserve.http.cli;

import dev.kvserve.kvcache.quant.Calibration;
import dev.kvserve.kvcache.quant.CalibrationFile;
import dev.kvserve.runtime.ModelFile;
import dev.kvserve.runtime.grad.ModelCalibrator;
import dev.kvserve.runtime.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "calibrate", mixinStandardHelpOptions = true,
        description = {"Fit a calibrated KV quantizer (KVQuant, Coupled Quantization, AQUA-KV) on a text and write its file.",
                "Keys/values and their Fisher weights (squared gradients of the LM loss) come from the model itself.",
                "Use it as e.g. --kv kvquant:bits=3,calib=FILE."})
public final class CalibrateCommand implements Callable<Integer> {

    @Mixin ModelOptions modelOptions;

    @Option(names = {"-f", "--file"}, required = true, paramLabel = "TEXT", description = "Calibration text (UTF-8).")
    Path file;

    @Option(names = "--method", required = true, paramLabel = "kvquant|cq|aqua", description = "Method to calibrate.")
    String method;

    @Option(names = "--params", defaultValue = "", paramLabel = "K=V,...",
            description = "Method parameters, e.g. bits=3,outliers=0.01,fisher=true (see kvcache/README.md).")
    String params;

    @Option(names = "--seq-len", defaultValue = "512", description = "Tokens per calibration sequence (default: ${DEFAULT-VALUE}).")
    int seqLen;

    @Option(names = "--sequences", defaultValue = "16", description = "Calibration sequences (default: ${DEFAULT-VALUE}).")
    int sequences;

    @Option(names = {"-o", "--output"}, required = true, paramLabel = "FILE", description = "Calibration file to write.")
    Path output;

    @Override
    public Integer call() throws Exception {
        if (!Files.isRegularFile(file)) throw new IllegalArgumentException("calibration text " + file + " does not exist");
        if (seqLen < 2 || sequences < 1) throw new IllegalArgumentException("--seq-len must be >= 2 and --sequences >= 1");
        try (ModelFile model = ModelFile.open(modelOptions.modelPath())) {
            Tokenizer tokenizer = dev.kvserve.runtime.model.LlamaModel.tokenizerOf(model.metadata());
            int[] tokens = tokenizer.encode(Files.readString(file), true, false);
            List<int[]> seqs = ModelCalibrator.sequences(tokens, Math.min(seqLen, ModelCalibrator.config(model).contextLength()),
                    sequences, tokenizer.bos());
            System.err.printf("calibrating %s on %d sequences of %d tokens from %s%n", method, seqs.size(), seqLen, file);
            ProgressBar[] bar = {null};
            String[] stage = {""};
            Calibration cal = ModelCalibrator.calibrate(model, seqs, method, params, (s, done, total) -> {
                if (!s.equals(stage[0])) {
                    if (bar[0] != null) bar[0].close();
                    bar[0] = new ProgressBar(s, total);
                    stage[0] = s;
                }
                bar[0].update(done);
            });
            if (bar[0] != null) bar[0].close();
            CalibrationFile.write(output, ModelCalibrator.identity(model), cal);
            System.err.printf("wrote %s (%,d bytes)%n", output, Files.size(output));
        }
        return 0;
    }
}
