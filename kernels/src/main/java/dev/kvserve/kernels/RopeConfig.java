package dev.kvserve.kernels;

/**
 * How rotary position embeddings are applied to a head.
 *
 * @param dims      leading dimensions of each head that rotate (the rest pass through)
 * @param freqBase  theta, {@code rope.freq_base} (10000 when a model does not say)
 * @param freqScale linear position scaling: positions are multiplied by this (1 / scaling factor)
 * @param neox      true for the "rotate half" layout (pairs i and i + dims/2: Hugging Face Llama,
 *                  Qwen2, GPT-NeoX); false for adjacent pairs (2i, 2i+1: Meta Llama, GGUF llama)
 */
public record RopeConfig(int dims, float freqBase, float freqScale, boolean neox) {

    /** Angle of pair {@code i} (0 ≤ i < dims/2) at {@code position}; shared by every backend. */
    public double theta(int position, int i) {
        return position * (double) freqScale * Math.pow(freqBase, -2.0 * i / dims);
    }
}
