package dev.kvserve.kvcache.quant;

import java.util.Set;

/**
 * AQUA-KV settings ({@code aqua:bits=2}).
 *
 * @param bits         residual bits per value: the HIGGS grid has {@code 2^(bits·gridDim)} points
 * @param gridDim      values per grid point (reference default 2)
 * @param firstBits    bits of layer 0, which has no predictor; its grid is always 2-dimensional, as the
 *                     reference's first-layer quantizer (4 bits: n=256 at d=2); 0 keeps layer 0 in fp16
 *                     ({@code --not_quantize_first_layer})
 * @param group        Hadamard group (reference 1024; capped at the KV width rounded up to a power of two)
 * @param prefix       leading tokens kept in fp16 (reference 4)
 * @param buffer       recent tokens kept in fp16; when this many have accumulated they are compressed
 *                     together as one write-once chunk (reference 128)
 * @param ridge        predictor ridge damping relative to the mean diagonal (reference 1e-3)
 */
public record AquaConfig(int bits, int gridDim, int firstBits, int group, int prefix, int buffer, double ridge) {

    /** Grid dimension of the layer-0 quantizer (the reference fixes it at 2). */
    public static final int FIRST_GRID_DIM = 2;
    static final int FIRST_MAX_BITS = 8 / FIRST_GRID_DIM;

    public static final Set<String> KEYS = Set.of("bits", "dim", "first", "group", "prefix", "buffer", "ridge");

    public AquaConfig {
        if (bits < 1 || bits * gridDim > 8) throw new IllegalArgumentException("aqua: bits·dim must be in 1..8, got bits=" + bits + " dim=" + gridDim);
        if (gridDim != 1 && gridDim != 2 && gridDim != 4) throw new IllegalArgumentException("aqua: dim must be 1, 2 or 4, got " + gridDim);
        if (firstBits != 0 && (firstBits < 1 || firstBits > FIRST_MAX_BITS)) {
            throw new IllegalArgumentException("aqua: first must be fp16 or 1.." + FIRST_MAX_BITS + " bits, got " + firstBits);
        }
        if (!Hadamard.isPowerOfTwo(group) || group < gridDim) throw new IllegalArgumentException("aqua: group must be a power of two >= dim, got " + group);
        if (prefix < 0 || buffer < 1) throw new IllegalArgumentException("aqua: prefix must be >= 0 and buffer >= 1");
        if (!(ridge >= 0)) throw new IllegalArgumentException("aqua: ridge must be >= 0");
    }

    public static AquaConfig parse(String params) {
        return from(QuantParams.parse("aqua", params, KEYS));
    }

    public static AquaConfig from(QuantParams p) {
        String first = p.string("first", "4");
        int firstBits;
        if (first.equalsIgnoreCase("fp16")) firstBits = 0;
        else {
            try {
                firstBits = Integer.parseInt(first);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("aqua: option first=" + first + " must be fp16 or a bit count");
            }
        }
        return new AquaConfig(p.integer("bits", 2, 1, 8), p.integer("dim", 2, 1, 4), firstBits,
                p.integer("group", 1024, 1, 1 << 16), p.integer("prefix", 4, 0, 1 << 20),
                p.integer("buffer", 128, 1, 1 << 20), p.real("ridge", 1e-3, 0, 1));
    }

    public String spec() {
        return "bits=" + bits + ",dim=" + gridDim + ",first=" + (firstBits == 0 ? "fp16" : String.valueOf(firstBits))
                + ",group=" + group + ",prefix=" + prefix + ",buffer=" + buffer + ",ridge=" + ridge;
    }
}
