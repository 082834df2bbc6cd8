package dev.kvserve.kvcache.quant;

import java.util.Set;

/**
 * Coupled Quantization settings ({@code cq:c=4,bits=2}, {@code cq:c=8,bits=1}): channels are coupled in
 * groups of {@code c}, each group is coded by one of {@code 2^(c·bits)} centroids ("CQ-<c>c<c·bits>b").
 *
 * @param channels coupled channels per group, c (must divide the head size)
 * @param bits     bits per channel; a group code has {@code c·bits} bits (at most 12)
 * @param fisher   Fisher-guided centroids (weight = summed squared gradients of the group); false = uniform
 * @param sinks    leading tokens kept in fp16 (0 in the paper's main results)
 * @param window   most recent tokens kept in fp16 (the paper's sliding-window variant uses 128; 0 = off)
 * @param postRope quantize keys after RoPE, which lets attention score keys from per-step query·centroid
 *                 tables; false (default) quantizes them before RoPE and rotates centroids on read
 */
public record CqConfig(int channels, int bits, boolean fisher, int sinks, int window, boolean postRope) {

    public static final Set<String> KEYS = Set.of("c", "bits", "fisher", "sinks", "window", "rope");

    public CqConfig {
        if (channels < 1 || channels > 16) throw new IllegalArgumentException("cq: c must be in 1..16, got " + channels);
        if (bits < 1 || channels * bits > 12) {
            throw new IllegalArgumentException("cq: c·bits must be in 1..12 (2^(c·bits) centroids per group), got c=" + channels + " bits=" + bits);
        }
        if (sinks < 0 || window < 0) throw new IllegalArgumentException("cq: sinks and window must be >= 0");
    }

    public static CqConfig parse(String params) {
        return from(QuantParams.parse("cq", params, KEYS));
    }

    public static CqConfig from(QuantParams p) {
        return new CqConfig(p.integer("c", 4, 1, 16), p.integer("bits", 2, 1, 12), p.bool("fisher", true),
                p.integer("sinks", 0, 0, 1 << 20), p.integer("window", 0, 0, 1 << 20),
                p.choice("rope", "pre", "pre", "post").equals("post"));
    }

    /** Bits of one group code. */
    public int codeBits() {
        return channels * bits;
    }

    public int centroids() {
        return 1 << codeBits();
    }

    public String spec() {
        return "c=" + channels + ",bits=" + bits + ",fisher=" + fisher + ",sinks=" + sinks + ",window=" + window
                + ",rope=" + (postRope ? "post" : "pre");
    }
}
