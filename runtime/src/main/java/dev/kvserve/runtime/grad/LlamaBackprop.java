package dev.kvserve.runtime.grad;

import dev.kvserve.kernels.GgmlQuantize;
import dev.kvserve.kernels.WeightTensor;
import java.util.Map;
import java.util.stream.IntStream;

/**
 * Reverse-mode differentiation of a Llama-family decoder's language-modelling loss with respect to
 * its key and value activations, over plain float arrays: what Fisher-weighted calibration (KVQuant,
 * Coupled Quantization) needs and the serving runtime has no use for.
 *
 * <p>The forward pass is the decoder's (embedding lookup, per block RMSNorm → Q/K/V projections (+ bias
 * when present) → RoPE on Q and K → causal grouped-query softmax attention → output projection and
 * residual; RMSNorm → SwiGLU feed-forward and residual; final RMSNorm, output projection) and keeps
 * every activation the backward pass needs. The loss is the mean cross-entropy of predicting token
 * {@code t+1} from the prefix up to {@code t}, over all {@code T−1} positions. Backward goes through the
 * output projection, RMSNorms, SwiGLU, residuals, attention softmax, RoPE and the projections; the
 * embedding lookup needs no gradient. Weight gradients are not formed: only activation gradients.
 *
 * <p>Weights are dequantised to float once ({@link GgmlQuantize#dequantizeRow}, any type the kernels
 * read). Matrices are [rows][cols] with {@code out[r] = Σ_c W[r][c]·x[c]}, as ggml stores them.
 * Rows of a matrix product run in parallel; the results do not depend on the thread count.
 */
public final class LlamaBackprop {

    private final GradConfig cfg;
    private final float[] embedding;
    private final float[] outputNorm;
    private final float[] output;
    private final Block[] blocks;

    private record Block(float[] attnNorm, float[] wq, float[] wk, float[] wv, float[] wo,
                         float[] bq, float[] bk, float[] bv,
                         float[] ffnNorm, float[] wGate, float[] wUp, float[] wDown) {}

    /**
     * Forward-pass activations and the gradients of the loss.
     *
     * @param loss        mean negative log-likelihood over {@code predictions} next-token predictions
     * @param keys        per layer, pre-RoPE keys {@code [T][kvHeads·headDim]}
     * @param values      per layer, values {@code [T][kvHeads·headDim]}
     * @param keyGrads    per layer, dLoss/dK with respect to the pre-RoPE keys (null when only the forward ran)
     * @param valueGrads  per layer, dLoss/dV (null when only the forward ran)
     */
    public record Result(double loss, int predictions, float[][] keys, float[][] values, float[][] keyGrads, float[][] valueGrads) {}

    /**
     * @param tensors weights under their GGUF names: {@code token_embd.weight}, {@code output_norm.weight},
     *                {@code output.weight} (optional: tied to the embedding), and per block {@code blk.N.}
     *                {@code attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}
     *                {@code .weight} (+ optional {@code attn_q/k/v.bias})
     */
    public LlamaBackprop(GradConfig cfg, Map<String, WeightTensor> tensors) {
        this.cfg = cfg;
        int dim = cfg.dim(), q = cfg.qDim(), kv = cfg.kvDim();
        this.embedding = matrix(tensors, "token_embd.weight", dim, cfg.vocab());
        this.outputNorm = matrix(tensors, "output_norm.weight", dim, 1);
        this.output = tensors.containsKey("output.weight") ? matrix(tensors, "output.weight", dim, cfg.vocab()) : embedding;
        this.blocks = new Block[cfg.layers()];
        for (int l = 0; l < cfg.layers(); l++) {
            String p = "blk." + l + ".";
            blocks[l] = new Block(
                    matrix(tensors, p + "attn_norm.weight", dim, 1),
                    matrix(tensors, p + "attn_q.weight", dim, q),
                    matrix(tensors, p + "attn_k.weight", dim, kv),
                    matrix(tensors, p + "attn_v.weight", dim, kv),
                    matrix(tensors, p + "attn_output.weight", q, dim),
                    optional(tensors, p + "attn_q.bias", q),
                    optional(tensors, p + "attn_k.bias", kv),
                    optional(tensors, p + "attn_v.bias", kv),
                    matrix(tensors, p + "ffn_norm.weight", dim, 1),
                    matrix(tensors, p + "ffn_gate.weight", dim, cfg.ffn()),
                    matrix(tensors, p + "ffn_up.weight", dim, cfg.ffn()),
                    matrix(tensors, p + "ffn_down.weight", cfg.ffn(), dim));
        }
    }

    public GradConfig config() {
        return cfg;
    }

    private static float[] optional(Map<String, WeightTensor> tensors, String name, int n) {
        return tensors.containsKey(name) ? matrix(tensors, name, n, 1) : null;
    }

    /** The tensor as a float array [rows][cols], checked to have that ggml shape. */
    private static float[] matrix(Map<String, WeightTensor> tensors, String name, int cols, int rows) {
        WeightTensor t = tensors.get(name);
        if (t == null) throw new IllegalArgumentException("the model has no tensor '" + name + "'");
        if (t.cols() != cols || t.rows() != rows) {
            throw new IllegalArgumentException("tensor " + name + " has shape [" + t.cols() + ", " + t.rows() + "], the config needs ["
                    + cols + ", " + rows + "]");
        }
        float[] out = new float[cols * rows];
        long rowBytes = t.rowBytes();
        for (int r = 0; r < rows; r++) GgmlQuantize.dequantizeRow(t.type(), t.data(), r * rowBytes, out, r * cols, cols);
        return out;
    }

    /** Activations of one block kept for the backward pass. */
    private static final class Saved {
        float[] xIn, h1, r1, q, kPre, kPost, v, probs, att, xMid, h2, r2, gate, up;
    }

    /** Forward only: the loss and the keys/values (no gradients). */
    public Result forward(int[] tokens) {
        return run(tokens, false);
    }

    /** Forward and backward: the loss, the keys/values and dLoss/dK (pre-RoPE), dLoss/dV per layer. */
    public Result forwardBackward(int[] tokens) {
        return run(tokens, true);
    }

    private Result run(int[] tokens, boolean backward) {
        int T = tokens.length;
        if (T < 2) throw new IllegalArgumentException("a loss needs at least two tokens, got " + T);
        if (T > cfg.contextLength()) throw new IllegalArgumentException(T + " tokens exceed the model's context of " + cfg.contextLength());
        int dim = cfg.dim(), vocab = cfg.vocab();
        for (int t : tokens) {
            if (t < 0 || t >= vocab) throw new IllegalArgumentException("token id " + t + " outside the vocabulary [0, " + vocab + ")");
        }
        Rope rope = new Rope(cfg, T);
        float[] x = new float[T * dim];
        for (int t = 0; t < T; t++) System.arraycopy(embedding, tokens[t] * dim, x, t * dim, dim);

        Saved[] saved = new Saved[cfg.layers()];
        float[][] keys = new float[cfg.layers()][];
        float[][] values = new float[cfg.layers()][];
        for (int l = 0; l < cfg.layers(); l++) {
            saved[l] = forwardBlock(blocks[l], x, T, rope);
            x = saved[l].xMid.clone();
            addInPlace(x, ffnOut(blocks[l], saved[l], T));
            keys[l] = saved[l].kPre;
            values[l] = saved[l].v;
        }
        float[] rf = new float[T];
        float[] hf = rmsnorm(x, outputNorm, T, dim, cfg.eps(), rf);
        float[] logits = matmul(output, hf, T, dim, vocab);

        int predictions = T - 1;
        double loss = 0;
        float[] dLogits = backward ? new float[T * vocab] : null;
        for (int t = 0; t < predictions; t++) {
            int o = t * vocab;
            double max = Double.NEGATIVE_INFINITY;
            for (int i = 0; i < vocab; i++) max = Math.max(max, logits[o + i]);
            double sum = 0;
            for (int i = 0; i < vocab; i++) sum += Math.exp(logits[o + i] - max);
            int target = tokens[t + 1];
            loss += Math.log(sum) - (logits[o + target] - max);
            if (backward) {
                for (int i = 0; i < vocab; i++) dLogits[o + i] = (float) (Math.exp(logits[o + i] - max) / sum / predictions);
                dLogits[o + target] -= 1f / predictions;
            }
        }
        loss /= predictions;
        if (!backward) return new Result(loss, predictions, keys, values, null, null);

        float[][] dKeys = new float[cfg.layers()][];
        float[][] dValues = new float[cfg.layers()][];
        float[] dhf = matmulT(output, dLogits, T, vocab, dim);
        float[] dx = rmsnormBackward(x, outputNorm, rf, dhf, T, dim);
        for (int l = cfg.layers() - 1; l >= 0; l--) {
            dx = backwardBlock(blocks[l], saved[l], dx, T, rope, l, dKeys, dValues);
        }
        return new Result(loss, predictions, keys, values, dKeys, dValues);
    }

    private Saved forwardBlock(Block b, float[] x, int T, Rope rope) {
        int dim = cfg.dim(), qDim = cfg.qDim(), kvDim = cfg.kvDim(), d = cfg.headDim();
        Saved s = new Saved();
        s.xIn = x;
        s.r1 = new float[T];
        s.h1 = rmsnorm(x, b.attnNorm, T, dim, cfg.eps(), s.r1);
        float[] q = matmul(b.wq, s.h1, T, dim, qDim);
        s.kPre = matmul(b.wk, s.h1, T, dim, kvDim);
        s.v = matmul(b.wv, s.h1, T, dim, kvDim);
        if (b.bq != null) addBias(q, b.bq, T);
        if (b.bk != null) addBias(s.kPre, b.bk, T);
        if (b.bv != null) addBias(s.v, b.bv, T);
        for (int t = 0; t < T; t++) for (int h = 0; h < cfg.heads(); h++) rope.rotate(q, t * qDim + h * d, t, false);
        s.q = q;
        s.kPost = s.kPre.clone();
        for (int t = 0; t < T; t++) for (int h = 0; h < cfg.kvHeads(); h++) rope.rotate(s.kPost, t * kvDim + h * d, t, false);

        // probs[h][t][u] for u <= t: softmax over the causal prefix of (q_t · k_u)/sqrt(d).
        int heads = cfg.heads(), group = heads / cfg.kvHeads();
        float scale = (float) (1.0 / Math.sqrt(d));
        s.probs = new float[heads * T * T];
        s.att = new float[T * qDim];
        float[] probs = s.probs, att = s.att, kPost = s.kPost, v = s.v;
        IntStream.range(0, heads * T).parallel().forEach(ht -> {
            int h = ht / T, t = ht % T, g = h / group;
            int po = (h * T + t) * T;
            int qo = t * qDim + h * d;
            float max = Float.NEGATIVE_INFINITY;
            for (int u = 0; u <= t; u++) {
                float acc = 0;
                int ko = u * kvDim + g * d;
                for (int i = 0; i < d; i++) acc += q[qo + i] * kPost[ko + i];
                probs[po + u] = acc * scale;
                max = Math.max(max, probs[po + u]);
            }
            double sum = 0;
            for (int u = 0; u <= t; u++) {
                float e = (float) Math.exp(probs[po + u] - max);
                probs[po + u] = e;
                sum += e;
            }
            float inv = (float) (1.0 / sum);
            for (int u = 0; u <= t; u++) {
                probs[po + u] *= inv;
                float p = probs[po + u];
                int vo = u * kvDim + g * d;
                for (int i = 0; i < d; i++) att[qo + i] += p * v[vo + i];
            }
        });
        s.xMid = x.clone();
        addInPlace(s.xMid, matmul(b.wo, att, T, qDim, dim));
        return s;
    }

    /** SwiGLU feed-forward of the block's mid-residual; keeps its activations in {@code s}. */
    private float[] ffnOut(Block b, Saved s, int T) {
        int dim = cfg.dim(), ffn = cfg.ffn();
        s.r2 = new float[T];
        s.h2 = rmsnorm(s.xMid, b.ffnNorm, T, dim, cfg.eps(), s.r2);
        s.gate = matmul(b.wGate, s.h2, T, dim, ffn);
        s.up = matmul(b.wUp, s.h2, T, dim, ffn);
        float[] act = new float[T * ffn];
        for (int i = 0; i < act.length; i++) act[i] = silu(s.gate[i]) * s.up[i];
        return matmul(b.wDown, act, T, ffn, dim);
    }

    /** Gradient of the block's input from the gradient of its output; records dK (pre-RoPE) and dV. */
    private float[] backwardBlock(Block b, Saved s, float[] dOut, int T, Rope rope, int layer, float[][] dKeys, float[][] dValues) {
        int dim = cfg.dim(), ffn = cfg.ffn(), qDim = cfg.qDim(), kvDim = cfg.kvDim(), d = cfg.headDim();
        int heads = cfg.heads(), group = heads / cfg.kvHeads();

        // Feed-forward: out = xMid + Wd·(silu(g)·u), g = Wg·h2, u = Wu·h2, h2 = rmsnorm(xMid).
        float[] dAct = matmulT(b.wDown, dOut, T, dim, ffn);
        float[] dGate = new float[T * ffn], dUp = new float[T * ffn];
        for (int i = 0; i < dAct.length; i++) {
            float g = s.gate[i];
            float sig = sigmoid(g);
            dUp[i] = dAct[i] * g * sig;
            dGate[i] = dAct[i] * s.up[i] * sig * (1 + g * (1 - sig));
        }
        float[] dh2 = matmulT(b.wGate, dGate, T, ffn, dim);
        addInPlace(dh2, matmulT(b.wUp, dUp, T, ffn, dim));
        float[] dMid = dOut.clone();
        addInPlace(dMid, rmsnormBackward(s.xMid, b.ffnNorm, s.r2, dh2, T, dim));

        // Attention: xMid = xIn + Wo·att, att_t = Σ_u P[t][u] v_u, P = softmax(q_t·k_u/√d).
        float[] dAtt = matmulT(b.wo, dMid, T, dim, qDim);
        float scale = (float) (1.0 / Math.sqrt(d));
        float[] dq = new float[T * qDim];
        float[] dkPost = new float[T * kvDim];
        float[] dv = new float[T * kvDim];
        float[] probs = s.probs;
        // dS[h][t][u] = P (dP − Σ_u' P dP), dP[h][t][u] = dAtt_t · v_u; per KV head so that the
        // accumulations into dk and dv (shared by the group's query heads) stay on one thread.
        IntStream.range(0, cfg.kvHeads()).parallel().forEach(g -> {
            float[] dS = new float[T];
            for (int h = g * group; h < (g + 1) * group; h++) {
                for (int t = 0; t < T; t++) {
                    int po = (h * T + t) * T;
                    int ao = t * qDim + h * d;
                    double dot = 0;
                    for (int u = 0; u <= t; u++) {
                        int vo = u * kvDim + g * d;
                        float dp = 0;
                        for (int i = 0; i < d; i++) dp += dAtt[ao + i] * s.v[vo + i];
                        dS[u] = dp;
                        dot += (double) probs[po + u] * dp;
                        float p = probs[po + u];
                        for (int i = 0; i < d; i++) dv[vo + i] += p * dAtt[ao + i];
                    }
                    for (int u = 0; u <= t; u++) {
                        float ds = probs[po + u] * (float) (dS[u] - dot) * scale;
                        int ko = u * kvDim + g * d;
                        for (int i = 0; i < d; i++) {
                            dq[ao + i] += ds * s.kPost[ko + i];
                            dkPost[ko + i] += ds * s.q[ao + i];
                        }
                    }
                }
            }
        });
        // RoPE is a rotation: the gradient of the unrotated vector is the gradient rotated back.
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < heads; h++) rope.rotate(dq, t * qDim + h * d, t, true);
            for (int h = 0; h < cfg.kvHeads(); h++) rope.rotate(dkPost, t * kvDim + h * d, t, true);
        }
        dKeys[layer] = dkPost;
        dValues[layer] = dv;
        float[] dh1 = matmulT(b.wq, dq, T, qDim, dim);
        addInPlace(dh1, matmulT(b.wk, dkPost, T, kvDim, dim));
        addInPlace(dh1, matmulT(b.wv, dv, T, kvDim, dim));
        float[] dIn = dMid;
        addInPlace(dIn, rmsnormBackward(s.xIn, b.attnNorm, s.r1, dh1, T, dim));
        return dIn;
    }

    // ---------------------------------------------------------------- primitives

    /** y[t] = x[t] · r_t · w with r_t = 1/sqrt(mean(x[t]²) + eps); r_t goes to {@code rOut}. */
    private static float[] rmsnorm(float[] x, float[] w, int T, int n, float eps, float[] rOut) {
        float[] y = new float[T * n];
        for (int t = 0; t < T; t++) {
            double ss = 0;
            for (int i = 0; i < n; i++) ss += (double) x[t * n + i] * x[t * n + i];
            float r = (float) (1.0 / Math.sqrt(ss / n + eps));
            rOut[t] = r;
            for (int i = 0; i < n; i++) y[t * n + i] = x[t * n + i] * r * w[i];
        }
        return y;
    }

    /** dx_i = r·w_i·dy_i − x_i·r³/n·Σ_j w_j·dy_j·x_j. */
    private static float[] rmsnormBackward(float[] x, float[] w, float[] r, float[] dy, int T, int n) {
        float[] dx = new float[T * n];
        for (int t = 0; t < T; t++) {
            int o = t * n;
            double dot = 0;
            for (int i = 0; i < n; i++) dot += (double) w[i] * dy[o + i] * x[o + i];
            float rt = r[t];
            float c = (float) (dot * rt * rt * rt / n);
            for (int i = 0; i < n; i++) dx[o + i] = rt * w[i] * dy[o + i] - x[o + i] * c;
        }
        return dx;
    }

    /** out[t][r] = Σ_c W[r][c]·x[t][c] for a [rows][cols] matrix. */
    private static float[] matmul(float[] w, float[] x, int T, int cols, int rows) {
        float[] out = new float[T * rows];
        IntStream.range(0, T).parallel().forEach(t -> {
            int xo = t * cols;
            for (int r = 0; r < rows; r++) {
                int wo = r * cols;
                float acc = 0;
                for (int c = 0; c < cols; c++) acc += w[wo + c] * x[xo + c];
                out[t * rows + r] = acc;
            }
        });
        return out;
    }

    /** dx[t][c] = Σ_r W[r][c]·dy[t][r]: the gradient through {@link #matmul}. */
    private static float[] matmulT(float[] w, float[] dy, int T, int rows, int cols) {
        float[] out = new float[T * cols];
        IntStream.range(0, T).parallel().forEach(t -> {
            int oo = t * cols;
            for (int r = 0; r < rows; r++) {
                float g = dy[t * rows + r];
                if (g == 0f) continue;
                int wo = r * cols;
                for (int c = 0; c < cols; c++) out[oo + c] += g * w[wo + c];
            }
        });
        return out;
    }

    private static void addBias(float[] x, float[] bias, int T) {
        int n = bias.length;
        for (int t = 0; t < T; t++) for (int i = 0; i < n; i++) x[t * n + i] += bias[i];
    }

    private static void addInPlace(float[] acc, float[] x) {
        for (int i = 0; i < acc.length; i++) acc[i] += x[i];
    }

    private static float sigmoid(float x) {
        return (float) (1.0 / (1.0 + Math.exp(-x)));
    }

    private static float silu(float x) {
        return x * sigmoid(x);
    }

    /** cos/sin of every rotary pair at positions 0..T-1, and the rotation of one head. */
    private static final class Rope {
        private final int pairs;
        private final boolean neox;
        private final float[] cos;
        private final float[] sin;

        Rope(GradConfig cfg, int T) {
            this.pairs = cfg.rope().dims() / 2;
            this.neox = cfg.rope().neox();
            this.cos = new float[T * pairs];
            this.sin = new float[T * pairs];
            for (int p = 0; p < T; p++) {
                for (int i = 0; i < pairs; i++) {
                    double th = cfg.rope().theta(p, i);
                    cos[p * pairs + i] = (float) Math.cos(th);
                    sin[p * pairs + i] = (float) Math.sin(th);
                }
            }
        }

        void rotate(float[] x, int off, int pos, boolean inverse) {
            for (int i = 0; i < pairs; i++) {
                float c = cos[pos * pairs + i];
                float s = inverse ? -sin[pos * pairs + i] : sin[pos * pairs + i];
                int a = off + (neox ? i : 2 * i), b = off + (neox ? i + pairs : 2 * i + 1);
                float x0 = x[a], x1 = x[b];
                x[a] = x0 * c - x1 * s;
                x[b] = x0 * s + x1 * c;
            }
        }
    }
}
