package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.KvGeometry;
import java.io.DataOutputStream;
import java.io.IOException;

/**
 * The fitted state of one quantization method for one model (codebooks, thresholds, centroids,
 * predictors): what a calibration file holds and what every sequence of that model shares.
 */
public sealed interface Calibration permits KvQuantCalibration, CqCalibration, AquaCalibration {

    QuantMethod method();

    /** The method's settings in canonical spec form, e.g. {@code bits=4,outliers=0.01,...}. */
    String spec();

    KvGeometry geometry();

    /**
     * Bytes one ordinary token costs across all layers before data-dependent parts: dense codes,
     * per-token scales and (KVQuant) the sparse stores' per-token pointers. Outliers (4 bytes each)
     * and fp16 tokens come on top; a sequence's {@code bytesHeld()} reports the exact total.
     */
    long bytesPerToken();

    /** Bytes of a token kept in fp16 (sinks, windows, buffers) across all layers: {@code 2·2·kvDim·layers}. */
    default long fp16BytesPerToken() {
        return 4L * geometry().kvDim() * geometry().layers();
    }

    /** Bytes shared by all sequences of the model (codebooks, per-channel scales, predictors, grids). */
    long sharedBytes();

    /** Serialises the method-specific state (see {@link CalibrationFile} for the framing). */
    void writePayload(DataOutputStream out) throws IOException;
}
