package dev.kvserve.kvcache.quant;

/**
 * Plain, unpaged stores of each method ({@link CompressedKv}): the first implementation of the method
 * cores, kept as an independent oracle for the paged formats and as the harness of the codec tests.
 */
final class Oracles {

    private Oracles() {}

    static CompressedKv open(Calibration cal) {
        return switch (cal) {
            case KvQuantCalibration k -> new KvQuantSequence(k);
            case CqCalibration c -> new CqSequence(c);
            case AquaCalibration a -> new AquaSequence(a);
        };
    }
}
