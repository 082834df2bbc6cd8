package dev.kvserve.runtime.grad;

import dev.kvserve.kernels.GgmlQuantize;
import dev.kvserve.kernels.WeightTensor;
import java.util.Map;

/**
 * An independent float64 forward pass of the same decoder, written plainly (no saved activations,
 * no parallelism), with a hook that adds {@code delta} to one pre-RoPE key or value element: the
 * finite-difference oracle for {@link LlamaBackprop}'s gradients.
 */
final class DoubleOracle {

    private final GradConfig c;
    private final Map<String, WeightTensor> w;
    private final Map<String, double[]> cache = new java.util.HashMap<>();

    DoubleOracle(GradConfig c, Map<String, WeightTensor> w) {
        this.c = c;
        this.w = w;
    }

    private double[] tensor(String name) {
        WeightTensor t = w.get(name);
        if (t == null) return null;
        return cache.computeIfAbsent(name, n -> dequantize(t));
    }

    private static double[] dequantize(WeightTensor t) {
        float[] f = new float[(int) t.elements()];
        for (int r = 0; r < t.rows(); r++) GgmlQuantize.dequantizeRow(t.type(), t.data(), r * t.rowBytes(), f, r * t.cols(), t.cols());
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) d[i] = f[i];
        return d;
    }

    /** Mean next-token NLL with element {@code c} of token {@code t}'s key (or value) in {@code layer} moved by delta. */
    double loss(int[] tokens, int layer, int t0, int c0, boolean key, double delta) {
        int T = tokens.length, dim = c.dim(), d = c.headDim(), kvDim = c.kvDim(), qDim = c.qDim();
        double[] emb = tensor("token_embd.weight");
        double[] x = new double[T * dim];
        for (int t = 0; t < T; t++) System.arraycopy(emb, tokens[t] * dim, x, t * dim, dim);
        for (int l = 0; l < c.layers(); l++) {
            String p = "blk." + l + ".";
            double[] h = norm(x, tensor(p + "attn_norm.weight"), T);
            double[] q = mul(tensor(p + "attn_q.weight"), h, T, dim, qDim, tensor(p + "attn_q.bias"));
            double[] k = mul(tensor(p + "attn_k.weight"), h, T, dim, kvDim, tensor(p + "attn_k.bias"));
            double[] v = mul(tensor(p + "attn_v.weight"), h, T, dim, kvDim, tensor(p + "attn_v.bias"));
            if (l == layer) (key ? k : v)[t0 * kvDim + c0] += delta;
            for (int t = 0; t < T; t++) {
                for (int hh = 0; hh < c.heads(); hh++) rope(q, t * qDim + hh * d, t);
                for (int hh = 0; hh < c.kvHeads(); hh++) rope(k, t * kvDim + hh * d, t);
            }
            double[] att = new double[T * qDim];
            int group = c.heads() / c.kvHeads();
            for (int hh = 0; hh < c.heads(); hh++) {
                int g = hh / group;
                for (int t = 0; t < T; t++) {
                    double[] s = new double[t + 1];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int u = 0; u <= t; u++) {
                        double dot = 0;
                        for (int i = 0; i < d; i++) dot += q[t * qDim + hh * d + i] * k[u * kvDim + g * d + i];
                        s[u] = dot / Math.sqrt(d);
                        max = Math.max(max, s[u]);
                    }
                    double sum = 0;
                    for (int u = 0; u <= t; u++) sum += s[u] = Math.exp(s[u] - max);
                    for (int u = 0; u <= t; u++) {
                        for (int i = 0; i < d; i++) att[t * qDim + hh * d + i] += s[u] / sum * v[u * kvDim + g * d + i];
                    }
                }
            }
            add(x, mul(tensor(p + "attn_output.weight"), att, T, qDim, dim, null));
            double[] h2 = norm(x, tensor(p + "ffn_norm.weight"), T);
            double[] gate = mul(tensor(p + "ffn_gate.weight"), h2, T, dim, c.ffn(), null);
            double[] up = mul(tensor(p + "ffn_up.weight"), h2, T, dim, c.ffn(), null);
            for (int i = 0; i < gate.length; i++) gate[i] = gate[i] / (1 + Math.exp(-gate[i])) * up[i];
            add(x, mul(tensor(p + "ffn_down.weight"), gate, T, c.ffn(), dim, null));
        }
        double[] hf = norm(x, tensor("output_norm.weight"), T);
        double[] out = tensor(w.containsKey("output.weight") ? "output.weight" : "token_embd.weight");
        double[] logits = mul(out, hf, T, dim, c.vocab(), null);
        double loss = 0;
        for (int t = 0; t < T - 1; t++) {
            double max = Double.NEGATIVE_INFINITY;
            for (int i = 0; i < c.vocab(); i++) max = Math.max(max, logits[t * c.vocab() + i]);
            double sum = 0;
            for (int i = 0; i < c.vocab(); i++) sum += Math.exp(logits[t * c.vocab() + i] - max);
            loss += Math.log(sum) - (logits[t * c.vocab() + tokens[t + 1]] - max);
        }
        return loss / (T - 1);
    }

    private double[] norm(double[] x, double[] wt, int T) {
        int n = c.dim();
        double[] y = new double[x.length];
        for (int t = 0; t < T; t++) {
            double ss = 0;
            for (int i = 0; i < n; i++) ss += x[t * n + i] * x[t * n + i];
            double r = 1 / Math.sqrt(ss / n + c.eps());
            for (int i = 0; i < n; i++) y[t * n + i] = x[t * n + i] * r * wt[i];
        }
        return y;
    }

    private static double[] mul(double[] wt, double[] x, int T, int cols, int rows, double[] bias) {
        double[] y = new double[T * rows];
        for (int t = 0; t < T; t++) {
            for (int r = 0; r < rows; r++) {
                double acc = bias == null ? 0 : bias[r];
                for (int i = 0; i < cols; i++) acc += wt[r * cols + i] * x[t * cols + i];
                y[t * rows + r] = acc;
            }
        }
        return y;
    }

    private static void add(double[] a, double[] b) {
        for (int i = 0; i < a.length; i++) a[i] += b[i];
    }

    private void rope(double[] x, int off, int pos) {
        int pairs = c.rope().dims() / 2;
        for (int i = 0; i < pairs; i++) {
            double th = c.rope().theta(pos, i);
            int a = off + (c.rope().neox() ? i : 2 * i), b = off + (c.rope().neox() ? i + pairs : 2 * i + 1);
            double x0 = x[a], x1 = x[b];
            x[a] = x0 * Math.cos(th) - x1 * Math.sin(th);
            x[b] = x0 * Math.sin(th) + x1 * Math.cos(th);
        }
    }
}
