package dev.kvserve.runtime.grad;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.runtime.model.ModelConfig;

/**
 * The hyper-parameters the backward pass needs of a Llama-family decoder.
 *
 * @param dim           embedding width
 * @param heads         query heads
 * @param kvHeads       key/value heads (grouped-query attention)
 * @param headDim       values per head
 * @param layers        decoder blocks
 * @param ffn           SwiGLU hidden width
 * @param vocab         vocabulary size
 * @param eps           RMSNorm epsilon
 * @param rope          rotary embedding of queries and keys
 * @param contextLength longest sequence the model supports
 */
public record GradConfig(int dim, int heads, int kvHeads, int headDim, int layers, int ffn, int vocab, float eps,
                         RopeConfig rope, int contextLength) {

    public GradConfig {
        if (dim <= 0 || heads <= 0 || kvHeads <= 0 || headDim <= 0 || layers <= 0 || ffn <= 0 || vocab <= 0
                || heads % kvHeads != 0 || contextLength <= 0) {
            throw new IllegalArgumentException("bad decoder shape: dim=" + dim + " heads=" + heads + " kvHeads=" + kvHeads
                    + " headDim=" + headDim + " layers=" + layers + " ffn=" + ffn + " vocab=" + vocab);
        }
        if (!(eps > 0)) throw new IllegalArgumentException("RMSNorm epsilon must be positive, got " + eps);
        if (rope.dims() > headDim || rope.dims() % 2 != 0) {
            throw new IllegalArgumentException("RoPE rotates " + rope.dims() + " of " + headDim + " head dims");
        }
    }

    public static GradConfig of(ModelConfig c) {
        return new GradConfig(c.dim(), c.heads(), c.kvHeads(), c.headDim(), c.layers(), c.ffnDim(), c.vocabSize(),
                c.rmsEps(), c.rope(), c.contextLength());
    }

    public int qDim() {
        return heads * headDim;
    }

    public int kvDim() {
        return kvHeads * headDim;
    }

    public KvGeometry kvGeometry() {
        return new KvGeometry(layers, heads, kvHeads, headDim, contextLength, rope);
    }
}
