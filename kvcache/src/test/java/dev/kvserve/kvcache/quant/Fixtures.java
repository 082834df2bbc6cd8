package dev.kvserve.kvcache.quant;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.RopeTable;
import java.util.Random;

/** Synthetic models, activations and a dense float64 attention oracle for the quantization tests. */
final class Fixtures {

    private Fixtures() {}

    /** 3 layers, 4 query heads, 2 KV heads of 8 (adjacent-pair RoPE, theta 10000). */
    static KvGeometry geometry() {
        return geometry(3, 4, 2, 8);
    }

    static KvGeometry geometry(int layers, int heads, int kvHeads, int headDim) {
        return new KvGeometry(layers, heads, kvHeads, headDim, 4096, new RopeConfig(headDim, 10000f, 1f, false));
    }

    /**
     * Keys with per-channel offsets and scales (what makes per-channel key quantization pay off),
     * rare large outliers, values with per-token scales; layer l+1 depends linearly on layer l so that
     * AQUA-KV's predictors have something to find. Gradients are random and heavier on some channels.
     */
    static float[][][] sequence(KvGeometry g, int tokens, long seed, boolean outliers) {
        Random r = new Random(seed);
        Random shape = new Random(12345);
        int c = g.kvDim();
        float[][] keys = new float[g.layers()][tokens * c];
        float[][] values = new float[g.layers()][tokens * c];
        float[][] kg = new float[g.layers()][tokens * c];
        float[][] vg = new float[g.layers()][tokens * c];
        for (int l = 0; l < g.layers(); l++) {
            float[] offset = new float[c], scale = new float[c], mix = new float[c];
            for (int i = 0; i < c; i++) {
                offset[i] = (float) (shape.nextDouble() * 4 - 2);
                scale[i] = (float) (0.2 + shape.nextDouble() * 2.8);
                mix[i] = (float) (shape.nextDouble() * 0.8 - 0.4);
            }
            for (int t = 0; t < tokens; t++) {
                float tokenScale = (float) (0.5 + r.nextDouble() * 1.5);
                for (int i = 0; i < c; i++) {
                    int o = t * c + i;
                    float prev = l == 0 ? 0f : keys[l - 1][o];
                    keys[l][o] = offset[i] + scale[i] * (float) r.nextGaussian() + mix[i] * prev;
                    if (outliers && r.nextInt(250) == 0) keys[l][o] += (r.nextBoolean() ? 1 : -1) * 12 * scale[i];
                    float prevV = l == 0 ? 0f : values[l - 1][o];
                    values[l][o] = tokenScale * (float) r.nextGaussian() + 0.3f * prevV + 0.2f * keys[l][o];
                    if (outliers && r.nextInt(300) == 0) values[l][o] *= 9;
                    kg[l][o] = (float) (r.nextGaussian() * 1e-3 * (1 + (i % 3)));
                    vg[l][o] = (float) (r.nextGaussian() * 1e-3 * (1 + (i % 2)));
                }
            }
        }
        return new float[][][] {keys, values, kg, vg};
    }

    static KvSamples samples(KvGeometry g, int sequences, int tokens, long seed, boolean gradients) {
        KvSamples.Builder b = KvSamples.builder(g);
        for (int s = 0; s < sequences; s++) {
            float[][][] seq = sequence(g, tokens, seed + s, true);
            b.addSequence(seq[0], seq[1], gradients ? seq[2] : null, gradients ? seq[3] : null);
        }
        return b.build();
    }

    static float[] randomQueries(KvGeometry g, int rows, long seed) {
        Random r = new Random(seed);
        float[] q = new float[rows * g.heads() * g.headDim()];
        for (int i = 0; i < q.length; i++) q[i] = (float) r.nextGaussian();
        return q;
    }

    /** Appends every layer of a sequence to {@code kv}, one step of {@code step} tokens at a time, layers in order. */
    static void fill(CompressedKv kv, float[][][] seq, int tokens, int step) {
        int c = kv.geometry().kvDim();
        for (int start = 0; start < tokens; start += step) {
            int n = Math.min(step, tokens - start);
            for (int l = 0; l < kv.geometry().layers(); l++) {
                float[] k = java.util.Arrays.copyOfRange(seq[0][l], start * c, (start + n) * c);
                float[] v = java.util.Arrays.copyOfRange(seq[1][l], start * c, (start + n) * c);
                kv.append(l, k, v, n, start);
            }
        }
    }

    /**
     * Causal softmax attention in float64 over given pre-RoPE keys and values (all {@code tokens} of
     * them cached), for {@code rows} queries at positions {@code pos0..}.
     */
    static float[] referenceAttention(KvGeometry g, float[] keysPre, float[] values, int tokens, float[] q, int rows, int pos0) {
        int d = g.headDim(), c = g.kvDim(), qDim = g.heads() * d;
        RopeTable rope = new RopeTable(g.rope(), d);
        float[] keys = keysPre.clone();
        for (int t = 0; t < tokens; t++) for (int h = 0; h < g.kvHeads(); h++) rope.rotate(keys, t * c + h * d, t);
        float[] out = new float[rows * qDim];
        for (int r = 0; r < rows; r++) {
            int visible = pos0 + r + 1;
            for (int h = 0; h < g.heads(); h++) {
                int kvh = h / g.groupSize();
                double[] s = new double[visible];
                double max = Double.NEGATIVE_INFINITY;
                for (int t = 0; t < visible; t++) {
                    double acc = 0;
                    for (int i = 0; i < d; i++) acc += (double) q[r * qDim + h * d + i] * keys[t * c + kvh * d + i];
                    s[t] = acc / Math.sqrt(d);
                    max = Math.max(max, s[t]);
                }
                double sum = 0;
                for (int t = 0; t < visible; t++) sum += s[t] = Math.exp(s[t] - max);
                for (int i = 0; i < d; i++) {
                    double acc = 0;
                    for (int t = 0; t < visible; t++) acc += s[t] / sum * values[t * c + kvh * d + i];
                    out[r * qDim + h * d + i] = (float) acc;
                }
            }
        }
        return out;
    }

    /** ||a − b|| / ||b||. */
    static double relativeError(float[] a, float[] b) {
        double num = 0, den = 0;
        for (int i = 0; i < a.length; i++) {
            num += (a[i] - b[i]) * (double) (a[i] - b[i]);
            den += b[i] * (double) b[i];
        }
        return Math.sqrt(num / den);
    }

    static double maxAbsDiff(float[] a, float[] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
        return m;
    }

    /** Largest distance from a point of [-1, 1] to its nearest signpost (dense scan plus a little slack). */
    static double codebookBound(float[] signposts) {
        double worst = 0;
        for (int i = 0; i <= 20000; i++) {
            double u = -1 + i / 10000.0;
            double best = Double.POSITIVE_INFINITY;
            for (float sp : signposts) best = Math.min(best, Math.abs(u - sp));
            worst = Math.max(worst, best);
        }
        return worst + 1e-4;
    }
}
