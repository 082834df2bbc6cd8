package dev.kvserve.attention;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.RopeTable;
import dev.kvserve.kvcache.evict.KeyWindow;

/**
 * Naive scalar attention over a plain, uncompressed history: the ground truth {@link PagedAttention}
 * is tested against. Materialises every key rotated at its position, scores in double precision,
 * two-pass softmax. Not for production use.
 */
public final class ReferenceAttention {

    /** Which (query head, query position, key position) pairs may attend; null means all causal. */
    public interface Visibility {
        boolean visible(int queryHead, int queryPosition, int keyPosition);
    }

    private ReferenceAttention() {}

    /**
     * Attention of {@code rows} queries at positions {@code start..} over keys 0..start+rows-1.
     *
     * @param keysPreRope [tokens][kvHeads*headDim] keys before RoPE, tokens >= start + rows
     * @param values      [tokens][kvHeads*headDim]
     * @param q           [rows][heads*headDim] queries after RoPE
     * @param window      StreamingLLM key window (visibility and cache positions of sinks), or null
     * @param visibility  extra restriction (sparse selection), or null
     * @return [rows][heads*headDim]
     */
    public static float[] attend(KvGeometry g, RopeTable rope, float[] keysPreRope, float[] values, float[] q,
                                 int start, int rows, KeyWindow window, Visibility visibility) {
        int d = g.headDim(), heads = g.heads(), kvDim = g.kvDim(), group = g.groupSize();
        int tokens = start + rows;
        float[] post = new float[tokens * kvDim];
        System.arraycopy(keysPreRope, 0, post, 0, tokens * kvDim);
        for (int t = 0; t < tokens; t++) for (int h = 0; h < g.kvHeads(); h++) rope.rotate(post, t * kvDim + h * d, t);
        float[] out = new float[rows * heads * d];
        double scale = 1.0 / Math.sqrt(d);
        double[] s = new double[tokens];
        float[] qs = new float[d];
        for (int r = 0; r < rows; r++) {
            int p = start + r;
            for (int h = 0; h < heads; h++) {
                int kvh = h / group;
                int qo = (r * heads + h) * d;
                double max = Double.NEGATIVE_INFINITY;
                for (int t = 0; t <= p; t++) {
                    boolean ok = (window == null || window.visible(p, t)) && (visibility == null || visibility.visible(h, p, t));
                    if (!ok) {
                        s[t] = Double.NEGATIVE_INFINITY;
                        continue;
                    }
                    System.arraycopy(q, qo, qs, 0, d);
                    if (window != null && t < window.sinks() && window.sinkShift(p) > 0) rope.rotate(qs, 0, -window.sinkShift(p));
                    double acc = 0;
                    for (int c = 0; c < d; c++) acc += (double) qs[c] * post[t * kvDim + kvh * d + c];
                    s[t] = acc * scale;
                    max = Math.max(max, s[t]);
                }
                if (max == Double.NEGATIVE_INFINITY) continue;
                double sum = 0;
                for (int t = 0; t <= p; t++) sum += s[t] == Double.NEGATIVE_INFINITY ? 0 : Math.exp(s[t] - max);
                for (int c = 0; c < d; c++) {
                    double acc = 0;
                    for (int t = 0; t <= p; t++) {
                        if (s[t] == Double.NEGATIVE_INFINITY) continue;
                        acc += Math.exp(s[t] - max) / sum * values[t * kvDim + kvh * d + c];
                    }
                    out[qo + c] = (float) acc;
                }
            }
        }
        return out;
    }

    /** Attention probability of query head {@code h} at position p on key t (same rules as {@link #attend}). */
    public static double[] probabilities(KvGeometry g, RopeTable rope, float[] keysPreRope, float[] q, int row, int start, int h) {
        int d = g.headDim(), heads = g.heads(), kvDim = g.kvDim();
        int p = start + row;
        int kvh = h / g.groupSize();
        double[] s = new double[p + 1];
        double max = Double.NEGATIVE_INFINITY;
        float[] k = new float[d];
        for (int t = 0; t <= p; t++) {
            System.arraycopy(keysPreRope, t * kvDim + kvh * d, k, 0, d);
            rope.rotate(k, 0, t);
            double acc = 0;
            for (int c = 0; c < d; c++) acc += (double) q[(row * heads + h) * d + c] * k[c];
            s[t] = acc / Math.sqrt(d);
            max = Math.max(max, s[t]);
        }
        double sum = 0;
        for (int t = 0; t <= p; t++) sum += Math.exp(s[t] - max);
        for (int t = 0; t <= p; t++) s[t] = Math.exp(s[t] - max) / sum;
        return s;
    }
}
