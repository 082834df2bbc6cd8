package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.KvCachePolicy;
import java.util.List;

/** A storage format that runs on a calibration file ({@code kvquant}, {@code cq}, {@code aqua}). */
public interface CalibratedFormat {

    /** The file named by the policy's {@code calib} parameter. */
    String calibrationFile();

    /** The model the file was fitted to. */
    ModelIdentity calibratedFor();

    /**
     * Refuses a policy whose calibration file was made for another model (architecture, shape, RoPE or
     * the hashed weight tensor). Binding a format only sees the KV geometry; {@code KvCacheManager}
     * calls this when it was built with the loaded model's identity ({@code LlamaModel.identity()});
     * other policies pass.
     */
    static void checkModel(KvCachePolicy policy, ModelIdentity model) {
        if (!(policy.format() instanceof CalibratedFormat f)) return;
        List<String> diff = f.calibratedFor().differences(model);
        if (!diff.isEmpty()) {
            throw new IllegalArgumentException("KV policy " + policy.format().spec() + ": calibration file " + f.calibrationFile()
                    + " was made for a different model (" + f.calibratedFor() + ") than the one loaded (" + model + "): "
                    + String.join("; ", diff) + "; calibrate this model with `kvserve calibrate`");
        }
    }
}
