package dev.kvserve.kvcache.quant;

import java.util.Set;

/**
 * KVQuant settings ({@code kvquant:bits=4,outliers=0.01,fisher=true,sinks=1}).
 *
 * @param bits        nuq bits per key and value element: 2, 3 or 4
 * @param outliers    fraction of each vector kept exactly in the sparse store (paper "-1%": 0.01; 0 = dense only)
 * @param fisher      weight k-means by Fisher information (false = the paper's unweighted ablation, degraded)
 * @param fisherScale multiply the Fisher weight by the element's squared scale ({@code F·s²}, as the paper's
 *                    objective says); false = {@code F} alone, as the released code does
 * @param sinks       leading tokens kept in fp16 and left out of calibration (paper: 1)
 * @param qNorm       Q-Norm correction of the codebooks (paper: on for 2-bit)
 */
public record KvQuantConfig(int bits, double outliers, boolean fisher, boolean fisherScale, int sinks, boolean qNorm) {

    public static final Set<String> KEYS = Set.of("bits", "outliers", "fisher", "fisherscale", "sinks", "qnorm");

    public KvQuantConfig {
        if (bits < 2 || bits > 4) throw new IllegalArgumentException("kvquant: bits must be 2, 3 or 4, got " + bits);
        if (!(outliers >= 0 && outliers < 0.5)) throw new IllegalArgumentException("kvquant: outliers must be in [0, 0.5), got " + outliers);
        if (sinks < 0) throw new IllegalArgumentException("kvquant: sinks must be >= 0, got " + sinks);
    }

    public static KvQuantConfig parse(String params) {
        return from(QuantParams.parse("kvquant", params, KEYS));
    }

    public static KvQuantConfig from(QuantParams p) {
        int bits = p.integer("bits", 4, 2, 4);
        return new KvQuantConfig(bits, p.real("outliers", 0.01, 0, 0.49), p.bool("fisher", true),
                p.bool("fisherscale", true), p.integer("sinks", 1, 0, 1 << 20), p.bool("qnorm", bits == 2));
    }

    /** Key outlier thresholds: per-channel percentiles at {@code t} and {@code 1−t}, {@code t = 1 − p/2}. */
    public double upperPercentile() {
        return 1 - outliers / 2;
    }

    /** Outliers taken from each end of a value vector of {@code n} elements: {@code ceil(p/2 · n)}. */
    public int valueOutliersPerSide(int n) {
        return outliers == 0 ? 0 : (int) Math.ceil(outliers / 2 * n - 1e-9);
    }

    public String spec() {
        return "bits=" + bits + ",outliers=" + outliers + ",fisher=" + fisher + ",fisherscale=" + fisherScale
                + ",sinks=" + sinks + ",qnorm=" + qNorm;
    }
}
