package dev.kvserve.kernels;

/**
 * How rotary position embeddings are applied to a head.
 *
 * @param dims        leading dimensions of each head that rotate (the rest pass through)
 * @param freqBase    theta, {@code rope.freq_base} (10000 when a model does not say)
 * @param freqScale   linear position scaling: positions are multiplied by this (1 / scaling factor)
 * @param neox        true for the "rotate half" layout (pairs i and i + dims/2: Hugging Face Llama,
 *                    Qwen2, GPT-NeoX); false for adjacent pairs (2i, 2i+1: Meta Llama, GGUF llama)
 * @param freqFactors per-pair divisors of the frequency (Llama 3.1+ "llama3" scaling, the
 *                    {@code rope_freqs.weight} tensor of its GGUF), or null
 */
public record RopeConfig(int dims, float freqBase, float freqScale, boolean neox, float[] freqFactors) {

    public RopeConfig {
        if (freqFactors != null && freqFactors.length != dims / 2) {
            throw new IllegalArgumentException("RoPE frequency factors: " + freqFactors.length + " values for " + dims / 2 + " pairs");
        }
        freqFactors = freqFactors == null ? null : freqFactors.clone();
    }

    public RopeConfig(int dims, float freqBase, float freqScale, boolean neox) {
        this(dims, freqBase, freqScale, neox, null);
    }

    /** Angle of pair {@code i} (0 ≤ i < dims/2) at {@code position}; shared by every backend. */
    public double theta(int position, int i) {
        double t = position * (double) freqScale * Math.pow(freqBase, -2.0 * i / dims);
        return freqFactors == null ? t : t / freqFactors[i];
    }
}
