package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.RopeTable;
import dev.kvserve.kvcache.KvGeometry;

/**
 * Shared driver of {@link CompressedKv}: argument checks, the causal softmax, and default key scoring
 * and value mixing that decode one token's head at a time into a scratch vector (codebook lookups),
 * rotate the key with RoPE and take dot products with the query heads of its GQA group. Methods that
 * can do better (CQ's per-step query·centroid tables) override {@link #scoreKeys} / {@link #mixValues}.
 */
abstract class QuantizedSequenceBase implements CompressedKv {

    protected final KvGeometry geo;
    protected final int kvDim;
    protected final int headDim;
    protected final int group;
    protected final RopeTable rope;
    protected final int[] lengths;
    private boolean closed;

    protected QuantizedSequenceBase(KvGeometry geo) {
        this.geo = geo;
        this.kvDim = geo.kvDim();
        this.headDim = geo.headDim();
        this.group = geo.groupSize();
        this.rope = new RopeTable(geo.rope(), geo.headDim());
        this.lengths = new int[geo.layers()];
    }

    @Override
    public KvGeometry geometry() {
        return geo;
    }

    @Override
    public int length(int layer) {
        checkLayer(layer);
        return lengths[layer];
    }

    protected void checkLayer(int layer) {
        if (closed) throw new IllegalStateException("this KV sequence has been closed");
        if (layer < 0 || layer >= geo.layers()) {
            throw new IllegalArgumentException("layer " + layer + " out of range [0, " + geo.layers() + ")");
        }
    }

    @Override
    public void append(int layer, float[] k, float[] v, int rows, int startPos) {
        checkLayer(layer);
        if (startPos != lengths[layer]) {
            throw new IllegalArgumentException("layer " + layer + " holds " + lengths[layer] + " tokens; cannot append at position " + startPos);
        }
        if (rows < 0 || k.length < rows * kvDim || v.length < rows * kvDim) {
            throw new IllegalArgumentException("append of " + rows + " rows needs " + rows * kvDim + " key and value floats, got "
                    + k.length + " and " + v.length);
        }
        appendRows(layer, k, v, rows, startPos);
        lengths[layer] += rows;
    }

    /** Stores rows tokens; the default stores them one at a time. */
    protected void appendRows(int layer, float[] k, float[] v, int rows, int startPos) {
        for (int r = 0; r < rows; r++) appendToken(layer, k, r * kvDim, v, r * kvDim, startPos + r);
    }

    protected abstract void appendToken(int layer, float[] k, int kOff, float[] v, int vOff, int pos);

    /** Pre-RoPE key of token {@code t}, KV head {@code kvHead}, into {@code out[0..headDim)}. */
    protected abstract void decodeKeyHead(int layer, int t, int kvHead, float[] out);

    /** Value of token {@code t}, KV head {@code kvHead}, into {@code out[0..headDim)}. */
    protected abstract void decodeValueHead(int layer, int t, int kvHead, float[] out);

    /** Called once before the queries of an {@link #attend} call are processed. */
    protected void beginAttend(int layer) {}

    @Override
    public void attend(int layer, float[] q, int rows, int queryPos0, float[] out) {
        checkLayer(layer);
        int qDim = geo.heads() * headDim;
        if (q.length < rows * qDim || out.length < rows * qDim) {
            throw new IllegalArgumentException("attend of " + rows + " rows needs " + rows * qDim + " query/output floats");
        }
        if (rows > 0 && (queryPos0 < 0 || queryPos0 + rows > lengths[layer])) {
            throw new IllegalArgumentException("queries at positions " + queryPos0 + ".." + (queryPos0 + rows - 1) + " but layer "
                    + layer + " holds " + lengths[layer] + " tokens (store a step's tokens before attending)");
        }
        if (rows == 0) return;
        beginAttend(layer);
        float scale = (float) (1.0 / Math.sqrt(headDim));
        float[] scores = new float[group * (queryPos0 + rows)];
        for (int r = 0; r < rows; r++) {
            int visible = queryPos0 + r + 1;
            for (int g = 0; g < geo.kvHeads(); g++) {
                int qOff = r * qDim + g * group * headDim;
                scoreKeys(layer, g, q, qOff, visible, scores);
                for (int j = 0; j < group; j++) softmax(scores, j * visible, visible, scale);
                java.util.Arrays.fill(out, qOff, qOff + group * headDim, 0f);
                mixValues(layer, g, scores, visible, out, qOff);
            }
        }
    }

    /**
     * Raw dot products {@code q_j · RoPE(k_t)} for the {@code group} query heads of KV head {@code kvHead}
     * (query head j at {@code q[qOff + j·headDim]}) and tokens {@code t < visible}, into
     * {@code scores[j·visible + t]}.
     */
    protected void scoreKeys(int layer, int kvHead, float[] q, int qOff, int visible, float[] scores) {
        float[] k = new float[headDim];
        for (int t = 0; t < visible; t++) {
            decodeKeyHead(layer, t, kvHead, k);
            rope.rotate(k, 0, t);
            for (int j = 0; j < group; j++) {
                int qo = qOff + j * headDim;
                float s = 0;
                for (int i = 0; i < headDim; i++) s += q[qo + i] * k[i];
                scores[j * visible + t] = s;
            }
        }
    }

    /** {@code out[outOff + j·headDim + i] += Σ_t probs[j·visible + t] · v_t[i]} for the group's query heads. */
    protected void mixValues(int layer, int kvHead, float[] probs, int visible, float[] out, int outOff) {
        float[] v = new float[headDim];
        for (int t = 0; t < visible; t++) {
            decodeValueHead(layer, t, kvHead, v);
            for (int j = 0; j < group; j++) {
                float p = probs[j * visible + t];
                int oo = outOff + j * headDim;
                for (int i = 0; i < headDim; i++) out[oo + i] += p * v[i];
            }
        }
    }

    private static void softmax(float[] x, int off, int n, float scale) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) max = Math.max(max, x[off + i] * scale);
        double sum = 0;
        for (int i = 0; i < n; i++) {
            float e = (float) Math.exp(x[off + i] * scale - max);
            x[off + i] = e;
            sum += e;
        }
        float inv = (float) (1.0 / sum);
        for (int i = 0; i < n; i++) x[off + i] *= inv;
    }

    @Override
    public void reconstruct(int layer, float[] keysOut, float[] valuesOut) {
        checkLayer(layer);
        int n = lengths[layer];
        if (keysOut.length < n * kvDim || valuesOut.length < n * kvDim) {
            throw new IllegalArgumentException("reconstruct needs room for " + n + " tokens");
        }
        beginAttend(layer);
        float[] scratch = new float[headDim];
        for (int t = 0; t < n; t++) {
            for (int g = 0; g < geo.kvHeads(); g++) {
                decodeKeyHead(layer, t, g, scratch);
                System.arraycopy(scratch, 0, keysOut, t * kvDim + g * headDim, headDim);
                decodeValueHead(layer, t, g, scratch);
                System.arraycopy(scratch, 0, valuesOut, t * kvDim + g * headDim, headDim);
            }
        }
    }

    @Override
    public void close() {
        closed = true;
        release();
    }

    /** Drops the stored data (called once by {@link #close}). */
    protected abstract void release();
}
