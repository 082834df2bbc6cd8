package dev.kvserve.kvcache.tier;

import java.util.Arrays;

/**
 * Attention of {@code queries} query vectors over a subset of the cached tokens, unnormalised: per
 * query the running maximum score {@code max}, the sum of {@code exp(score - max)} and the
 * exp-weighted sum of values {@code out} (row-major [queries][headDim]). Partials over disjoint token
 * sets merge exactly (log-sum-exp): {@code m = max(m1, m2)}, {@code s = s1·e^(m1-m) + s2·e^(m2-m)},
 * {@code o = o1·e^(m1-m) + o2·e^(m2-m)}; the attention output is {@code o / s}. A query that saw no
 * token has {@code max = -inf}, {@code sum = 0}, {@code out = 0}.
 */
public record PartialAttention(int queries, int headDim, float[] max, float[] sum, float[] out) {

    public PartialAttention {
        if (max.length != queries || sum.length != queries || out.length != (long) queries * headDim) {
            throw new IllegalArgumentException("partial attention arrays do not match " + queries + " queries x " + headDim);
        }
    }

    public static PartialAttention empty(int queries, int headDim) {
        float[] m = new float[queries];
        Arrays.fill(m, Float.NEGATIVE_INFINITY);
        return new PartialAttention(queries, headDim, m, new float[queries], new float[queries * headDim]);
    }

    /** Merges {@code other} into this partial's arrays (in place) and returns this. */
    public PartialAttention mergeInPlace(PartialAttention other) {
        if (other.queries != queries || other.headDim != headDim) throw new IllegalArgumentException("partials of different shapes");
        mergeInto(max, sum, out, other, headDim);
        return this;
    }

    /** Merges {@code p} into the running state (m, s, o) of an online softmax, in place. */
    public static void mergeInto(float[] m, float[] s, float[] o, PartialAttention p, int headDim) {
        for (int i = 0; i < p.queries; i++) {
            float pm = p.max[i];
            if (pm == Float.NEGATIVE_INFINITY) continue;
            float mNew = Math.max(m[i], pm);
            float a = m[i] == Float.NEGATIVE_INFINITY ? 0f : (float) Math.exp(m[i] - mNew);
            float b = (float) Math.exp(pm - mNew);
            s[i] = s[i] * a + p.sum[i] * b;
            int off = i * headDim;
            for (int c = 0; c < headDim; c++) o[off + c] = o[off + c] * a + p.out[off + c] * b;
            m[i] = mNew;
        }
    }

    /** Bytes this partial occupies on a link (fp32 max, sum, out). */
    public long linkBytes() {
        return 4L * (2L * queries + (long) queries * headDim);
    }
}
