package dev.kvserve.kvcache.quant;

/** Progress of a calibration: {@code done} of {@code total} steps of {@code stage} are finished. */
@FunctionalInterface
public interface CalibrationProgress {

    CalibrationProgress NONE = (stage, done, total) -> {};

    void report(String stage, int done, int total);
}
