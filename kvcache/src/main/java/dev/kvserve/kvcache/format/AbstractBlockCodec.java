package dev.kvserve.kvcache.format;

import dev.kvserve.kernels.kv.KvKernels;
import java.lang.foreign.MemorySegment;

/**
 * Base for codecs that decode one slot at a time into a scratch row and use vectorised dot/axpy on
 * it: the cache is read block by block, slot by slot, never dequantised as a whole. Subclasses give
 * the byte layout ({@link #decodeKey}, {@link #decodeValue}, {@link #write}, ...).
 */
public abstract class AbstractBlockCodec implements BlockCodec {

    protected final int headDim;
    protected final int blockTokens;
    protected final KeyFrame keyFrame;

    protected AbstractBlockCodec(int headDim, int blockTokens, KeyFrame keyFrame) {
        this.headDim = headDim;
        this.blockTokens = blockTokens;
        this.keyFrame = keyFrame;
    }

    @Override
    public KeyFrame keyFrame() {
        return keyFrame;
    }

    /** Offset of {@code kvHead}'s key of {@code row} in the frame this codec stores. */
    protected float[] keySource(dev.kvserve.kvcache.KvRows rows) {
        return keyFrame == KeyFrame.PRE_ROPE ? rows.keysPreRope() : rows.keysPostRope();
    }

    @Override
    public void keyScores(MemorySegment block, int from, int to, float[] q, int qOff, int qStride, int nq,
                          float[] scores, int ld, BlockContext ctx) {
        float[] k = ctx.scratch(headDim);
        int[] pos = ctx.positions();
        for (int s = from; s < to; s++) {
            if (pos[s] < 0) {
                for (int i = 0; i < nq; i++) scores[i * ld + s - from] = 0f;
                continue;
            }
            decodeKey(block, s, k, 0, ctx);
            if (keyFrame == KeyFrame.PRE_ROPE) ctx.rope().rotate(k, 0, pos[s]);
            for (int i = 0; i < nq; i++) scores[i * ld + s - from] = KvKernels.dot(q, qOff + i * qStride, k, 0, headDim);
        }
    }

    @Override
    public void addValues(MemorySegment block, int from, int to, float[] w, int ld, int nq,
                          float[] acc, int accOff, int accStride, BlockContext ctx) {
        float[] v = ctx.scratch(headDim);
        for (int s = from; s < to; s++) {
            boolean any = false;
            for (int i = 0; i < nq && !any; i++) any = w[i * ld + s - from] != 0f;
            if (!any) continue;
            decodeValue(block, s, v, 0, ctx);
            for (int i = 0; i < nq; i++) {
                float p = w[i * ld + s - from];
                if (p != 0f) KvKernels.axpy(p, v, 0, acc, accOff + i * accStride, headDim);
            }
        }
    }
}
