package dev.kvserve.kvcache.quant;

/**
 * The calibration entry point: fits a method to collected KV activations. The {@code kvserve calibrate}
 * command collects {@link KvSamples} from the model (with gradients for Fisher weighting, see
 * {@code dev.kvserve.runtime.grad.FisherCollector}), calls {@link #fit}, and writes the result with
 * {@link CalibrationFile#write}.
 */
public final class Calibrator {

    private Calibrator() {}

    /**
     * @param method  kvquant, cq or aqua
     * @param params  the method's settings ({@code bits=4,outliers=0.01,...}; empty for defaults)
     * @param samples calibration activations of the model (with gradients if the settings ask for Fisher)
     */
    public static Calibration fit(String method, String params, KvSamples samples, CalibrationProgress progress) {
        return fit(QuantMethod.byName(method), params, samples, progress);
    }

    /** Whether fitting {@code method} with {@code params} uses Fisher information (so samples need gradients). */
    public static boolean needsGradients(String method, String params) {
        return switch (QuantMethod.byName(method)) {
            case KVQUANT -> KvQuantConfig.parse(params).fisher();
            case CQ -> CqConfig.parse(params).fisher();
            case AQUA -> false;
        };
    }

    public static Calibration fit(QuantMethod method, String params, KvSamples samples, CalibrationProgress progress) {
        CalibrationProgress p = progress == null ? CalibrationProgress.NONE : progress;
        return switch (method) {
            case KVQUANT -> KvQuantCalibration.fit(KvQuantConfig.parse(params), samples, p);
            case CQ -> CqCalibration.fit(CqConfig.parse(params), samples, p);
            case AQUA -> AquaCalibration.fit(AquaConfig.parse(params), samples, p);
        };
    }
}
