package dev.kvserve.runtime.grad;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.quant.Calibration;
import dev.kvserve.kvcache.quant.CalibrationProgress;
import dev.kvserve.kvcache.quant.Calibrator;
import dev.kvserve.kvcache.quant.KvSamples;
import dev.kvserve.kvcache.quant.ModelIdentity;
import dev.kvserve.runtime.ModelFile;
import dev.kvserve.runtime.model.ModelConfig;
import java.util.ArrayList;
import java.util.List;

/**
 * Calibration of a KV-cache quantization method on a real model: run the model over calibration
 * sequences (with the backward pass when the method wants Fisher information), collect per-layer
 * pre-RoPE keys, values and their loss gradients, fit the method. What {@code kvserve calibrate} calls:
 * <pre>
 *   try (ModelFile f = ModelFile.open(model)) {
 *       List&lt;int[]&gt; seqs = ModelCalibrator.sequences(tokens, 512, 16, bos);
 *       Calibration cal = ModelCalibrator.calibrate(f, seqs, "kvquant", "bits=4", progress);
 *       CalibrationFile.write(out, ModelCalibrator.identity(f), cal);
 *   }
 * </pre>
 */
public final class ModelCalibrator {

    private ModelCalibrator() {}

    public static ModelConfig config(ModelFile file) {
        return ModelConfig.fromMetadata(file.metadata(), file.tensor("token_embd.weight").rows(),
                file.path().getFileName().toString());
    }

    /** The identity a calibration file made for this model records (hash of {@code blk.0.attn_k.weight}). */
    public static ModelIdentity identity(ModelFile file) {
        ModelConfig c = config(file);
        return ModelIdentity.of(c.architecture(), c.kvGeometry(), file.tensor(ModelIdentity.DEFAULT_HASHED_TENSOR));
    }

    /**
     * Up to {@code count} non-overlapping sequences of {@code length} tokens cut from the start of a
     * tokenized text (the paper's protocol: 16 × 2048 from a training split), each starting with
     * {@code bos} when {@code bos >= 0}, as llama.cpp's perplexity chunks do.
     */
    public static List<int[]> sequences(int[] tokens, int length, int count, int bos) {
        if (length < 2) throw new IllegalArgumentException("calibration sequences need at least 2 tokens, got " + length);
        int n = Math.min(count, tokens.length / length);
        if (n == 0) {
            throw new IllegalArgumentException("the calibration text has " + tokens.length + " tokens, fewer than one sequence of " + length);
        }
        List<int[]> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            int[] s = java.util.Arrays.copyOfRange(tokens, i * length, (i + 1) * length);
            if (bos >= 0) s[0] = bos;
            out.add(s);
        }
        return out;
    }

    /** Keys, values and (when {@code gradients}) dLoss/dK, dLoss/dV of every sequence. */
    public static KvSamples collect(LlamaBackprop model, List<int[]> sequences, boolean gradients, CalibrationProgress progress) {
        if (sequences.isEmpty()) throw new IllegalArgumentException("no calibration sequences");
        CalibrationProgress p = progress == null ? CalibrationProgress.NONE : progress;
        KvGeometry geo = model.config().kvGeometry();
        KvSamples.Builder b = KvSamples.builder(geo);
        for (int i = 0; i < sequences.size(); i++) {
            p.report(gradients ? "activations and gradients" : "activations", i, sequences.size());
            LlamaBackprop.Result r = gradients ? model.forwardBackward(sequences.get(i)) : model.forward(sequences.get(i));
            b.addSequence(r.keys(), r.values(), r.keyGrads(), r.valueGrads());
        }
        p.report(gradients ? "activations and gradients" : "activations", sequences.size(), sequences.size());
        return b.build();
    }

    /** Collects samples from the model (gradients only if the settings ask for Fisher weighting) and fits the method. */
    public static Calibration calibrate(ModelFile file, List<int[]> sequences, String method, String params,
                                        CalibrationProgress progress) {
        LlamaBackprop model = new LlamaBackprop(GradConfig.of(config(file)), file.tensors());
        KvSamples samples = collect(model, sequences, Calibrator.needsGradients(method, params), progress);
        return Calibrator.fit(method, params, samples, progress);
    }
}
