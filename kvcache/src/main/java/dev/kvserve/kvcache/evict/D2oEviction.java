package dev.kvserve.kvcache.evict;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.Lanes;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.QueryRows;
import dev.kvserve.kvcache.policy.Params;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * D2O (Wan et al., "D2O: Dynamic Discriminative Operations for Efficient Long-Context Inference of
 * Large Language Models", ICLR 2025; methods.md §6), after the reference code
 * ({@code modeling_llama3_7b_13b_d2o.py}, {@code modeling_llama3_new.py}).
 *
 * <p>Layer level, once per request: from the prompt's attention, each query head's column sums (the
 * mass every key received) have a variance over keys; min-max normalised over heads and averaged it
 * is the layer's density σ. Over all layers {@code w = softmax(-σ)}; layer {@code l} gets the budget
 * ratio {@code clamp(w_l · L · ρ, 0.01, 1)} of the sequence, {@code ρ = budget}, split between heavy
 * hitters and the recent window in the proportion {@code (budget - window) : window}.
 *
 * <p>Token level, every step from the first decode step on (as the reference code): scores accumulate
 * attention like H2O (summed over the GQA group); each KV head keeps its recent window, the
 * {@code sinks} first tokens and its top-scored tokens. Each evicted token {@code e} finds the
 * retained token {@code r*} whose key is most cosine-similar ({@code m_e}); the layer's threshold
 * {@code τ} is an EMA of the mean {@code m} ({@code τ = mean} the first time, then
 * {@code α·τ + β·mean}); tokens with {@code m_e ≥ τ} are merged into their {@code r*}:
 * {@code merge=paper} weights them {@code exp(m_e) / (Σ exp(m) + e)} against the retained token's
 * {@code e / (Σ exp(m) + e)} (its own similarity 1); {@code merge=code} is the released code's
 * {@code scatter_reduce(mean)} of {@code K_r} and every {@code m_e · K_e}; {@code merge=none} drops
 * them (D2O without compensation = H2O with D2O's layer budgets). Layers in {@code skip} (0, 1 and the
 * last, as the reference code) are never compressed.
 */
public final class D2oEviction implements EvictionPolicy {

    static final int SCORE = 0;

    enum Merge { PAPER, CODE, NONE }

    private final Params params;
    private final Budget budget;
    private final Budget window;
    private final int sinks;
    private final LayerSet skip;
    private final double alpha;
    private final double beta;
    private final Merge merge;

    public D2oEviction(Params params) {
        this.params = params;
        this.budget = (Budget) params.values().get("budget");
        this.window = (Budget) params.values().get("window");
        this.sinks = params.getInt("sinks");
        this.skip = (LayerSet) params.values().get("skip");
        this.alpha = params.getDouble("alpha");
        this.beta = params.getDouble("beta");
        this.merge = Merge.valueOf(params.getString("merge").toUpperCase(Locale.ROOT));
    }

    @Override
    public Params params() {
        return params;
    }

    @Override
    public Lanes lanes() {
        return new Lanes(1, 0);
    }

    @Override
    public EvictionState open(KvGeometry geometry, int blockTokens) {
        return new State(geometry, skip.resolve(geometry.layers()));
    }

    @Override
    public int maxRetainedTokens(int layer, int tokens, int stepTokens) {
        // a layer's share is decided at run time and may reach the whole sequence (ratio clamp 1.0)
        return tokens + stepTokens;
    }

    /** Budget ratio of each layer from the layers' densities σ (softmax(-σ) · L · ρ, clamped to [0.01, 1]). */
    static double[] layerRatios(double[] sigma, double rho) {
        int n = sigma.length;
        double max = Double.NEGATIVE_INFINITY;
        for (double s : sigma) max = Math.max(max, -s);
        double sum = 0;
        double[] w = new double[n];
        for (int l = 0; l < n; l++) sum += w[l] = Math.exp(-sigma[l] - max);
        for (int l = 0; l < n; l++) w[l] = Math.min(1.0, Math.max(0.01, w[l] / sum * n * rho));
        return w;
    }

    /**
     * σ of one layer: per query head the unbiased variance over keys of the column sums, min-max
     * normalised over heads (+1e-6 in the denominator, as the code), averaged over heads.
     */
    static double density(float[][] columnSums, int keys) {
        int heads = columnSums.length;
        double[] var = new double[heads];
        for (int h = 0; h < heads; h++) {
            if (keys < 2) continue;
            double mean = 0;
            for (int k = 0; k < keys; k++) mean += columnSums[h][k];
            mean /= keys;
            double ss = 0;
            for (int k = 0; k < keys; k++) ss += (columnSums[h][k] - mean) * (columnSums[h][k] - mean);
            var[h] = ss / (keys - 1);
        }
        double lo = Arrays.stream(var).min().orElse(0), hi = Arrays.stream(var).max().orElse(0);
        double sigma = 0;
        for (double v : var) sigma += (v - lo) / (hi - lo + 1e-6);
        return sigma / heads;
    }

    private final class State implements EvictionState {
        private final KvGeometry g;
        private final boolean[] skipped;
        /** Per layer, per query head, column sums of the prompt's attention by slot (only until σ is known). */
        private float[][][] prefillSums;
        private final double[] sigma;
        private final boolean[] sigmaKnown;
        private final int[] promptKeys;
        /** True once every layer's σ is known (the layer budgets are then fixed up to ρ). */
        private boolean ready;
        private final double[] tau;

        State(KvGeometry g, boolean[] skipped) {
            this.g = g;
            this.skipped = skipped;
            this.prefillSums = new float[g.layers()][][];
            this.sigma = new double[g.layers()];
            this.sigmaKnown = new boolean[g.layers()];
            this.promptKeys = new int[g.layers()];
            this.tau = new double[g.layers()];
            Arrays.fill(tau, Double.NaN);
        }

        State(State src) {
            this.g = src.g;
            this.skipped = src.skipped;
            this.prefillSums = new float[src.prefillSums.length][][];
            for (int l = 0; l < prefillSums.length; l++) {
                if (src.prefillSums[l] == null) continue;
                prefillSums[l] = new float[src.prefillSums[l].length][];
                for (int h = 0; h < prefillSums[l].length; h++) prefillSums[l][h] = src.prefillSums[l][h].clone();
            }
            this.sigma = src.sigma.clone();
            this.sigmaKnown = src.sigmaKnown.clone();
            this.promptKeys = src.promptKeys.clone();
            this.ready = src.ready;
            this.tau = src.tau.clone();
        }

        @Override
        public int attentionWeightsFrom(int layer, int stepStart, int stepTokens, boolean endsPrompt) {
            return 0;
        }

        @Override
        public void afterAttention(LayerKv kv, QueryRows queries, AttentionWeights weights) {
            if (weights == null) throw new IllegalStateException("d2o needs attention weights; the attention implementation gave none");
            int layer = kv.layer();
            for (int h = 0; h < g.kvHeads(); h++) {
                int n = Math.min(kv.slots(h), weights.slots(h));
                for (int s = 0; s < n; s++) {
                    if (kv.isLive(h, s)) {
                        kv.setSlotFloat(h, s, SCORE, kv.slotFloat(h, s, SCORE) + weights.reduce(h, s, AttentionWeights.Reduction.SUM));
                    }
                }
            }
            if (!sigmaKnown[layer]) addPrefillSums(kv, weights);
            if (ready && !skipped[layer]) compress(kv, queries.firstPosition() + queries.rows());
        }

        private void addPrefillSums(LayerKv kv, AttentionWeights weights) {
            int layer = kv.layer(), group = g.groupSize();
            int slots = kv.slots(0);
            if (prefillSums[layer] == null) prefillSums[layer] = new float[g.heads()][Math.max(16, slots)];
            for (int h = 0; h < g.heads(); h++) {
                float[] sums = prefillSums[layer][h];
                if (sums.length < slots) prefillSums[layer][h] = sums = Arrays.copyOf(sums, Math.max(slots, 2 * sums.length));
                int kvHead = h / group, j = h % group;
                int n = Math.min(slots, weights.slots(kvHead));
                for (int s = 0; s < n; s++) sums[s] += weights.get(kvHead, j, s);
            }
            promptKeys[layer] = slots;
        }

        @Override
        public void afterPrefill(LayerKv kv) {
            int layer = kv.layer();
            if (sigmaKnown[layer]) return;
            sigma[layer] = prefillSums[layer] == null ? 0 : density(prefillSums[layer], promptKeys[layer]);
            sigmaKnown[layer] = true;
            prefillSums[layer] = null;
            for (boolean known : sigmaKnown) if (!known) return;
            // as the reference code: budgets apply from the first decode step, once every layer's prompt is done
            ready = true;
        }

        private void compress(LayerKv kv, int length) {
            int layer = kv.layer();
            int total = budget.tokensFor(length);
            if (total <= 0 || length == 0) return;
            double rho = (double) total / length;
            double ratio = layerRatios(sigma, rho)[layer];
            double recentShare = Math.min(1.0, (double) window.tokensFor(length) / total);
            int recent = (int) (length * ratio * recentShare);
            int heavy = (int) (length * ratio * (1 - recentShare));
            Retention.Protection keep = Retention.Protection.of(sinks, recent, length, length);
            int heads = g.kvHeads(), d = g.headDim();
            int[][] victims = new int[heads][];
            double[][] best = new double[heads][];
            int[][] target = new int[heads][];
            double sum = 0;
            int count = 0;
            for (int h = 0; h < heads; h++) {
                int head = h;
                victims[h] = Retention.choose(kv, h, heavy + recent, keep, s -> kv.slotFloat(head, s, SCORE));
                if (victims[h].length == 0 || merge == Merge.NONE) continue;
                boolean[] evicted = new boolean[kv.slots(h)];
                for (int s : victims[h]) evicted[s] = true;
                int[] kept = new int[kv.liveTokens(h) - victims[h].length];
                int k = 0;
                for (int s = 0; s < kv.slots(h); s++) if (kv.isLive(h, s) && !evicted[s]) kept[k++] = s;
                float[] keptKeys = new float[kept.length * d];
                double[] keptNorm = new double[kept.length];
                for (int i = 0; i < kept.length; i++) {
                    kv.readKey(h, kept[i], keptKeys, i * d);
                    keptNorm[i] = norm(keptKeys, i * d, d);
                }
                best[h] = new double[victims[h].length];
                target[h] = new int[victims[h].length];
                float[] key = new float[d];
                for (int e = 0; e < victims[h].length; e++) {
                    kv.readKey(h, victims[h][e], key, 0);
                    double en = norm(key, 0, d);
                    double m = Double.NEGATIVE_INFINITY;
                    int arg = -1;
                    for (int i = 0; i < kept.length; i++) {
                        double dot = 0;
                        for (int c = 0; c < d; c++) dot += (double) key[c] * keptKeys[i * d + c];
                        double cos = en == 0 || keptNorm[i] == 0 ? 0 : dot / (en * keptNorm[i]);
                        if (cos > m) {
                            m = cos;
                            arg = kept[i];
                        }
                    }
                    best[h][e] = m;
                    target[h][e] = arg;
                    if (arg >= 0) {
                        sum += m;
                        count++;
                    }
                }
            }
            if (count > 0) tau[layer] = Double.isNaN(tau[layer]) ? sum / count : alpha * tau[layer] + beta * (sum / count);
            for (int h = 0; h < heads; h++) {
                if (best[h] != null) mergeInto(kv, h, victims[h], best[h], target[h], tau[layer]);
                for (int s : victims[h]) kv.evict(h, s);
            }
        }

        /** Merges every victim with similarity >= threshold into its most similar retained token. */
        private void mergeInto(LayerKv kv, int h, int[] victims, double[] sim, int[] target, double threshold) {
            int d = g.headDim();
            Map<Integer, List<Integer>> groups = new TreeMap<>();
            for (int e = 0; e < victims.length; e++) {
                if (target[e] >= 0 && sim[e] >= threshold) groups.computeIfAbsent(target[e], x -> new ArrayList<>()).add(e);
            }
            float[] k = new float[d], v = new float[d], ek = new float[d], ev = new float[d];
            for (var entry : groups.entrySet()) {
                int r = entry.getKey();
                kv.readKey(h, r, k, 0);
                kv.readValue(h, r, v, 0);
                double[] mk = new double[d], mv = new double[d];
                double selfWeight, norm;
                if (merge == Merge.PAPER) {
                    double z = Math.E;
                    for (int e : entry.getValue()) z += Math.exp(sim[e]);
                    selfWeight = Math.E / z;
                    norm = z;
                } else {
                    selfWeight = 1.0 / (1 + entry.getValue().size());
                    norm = 1 + entry.getValue().size();
                }
                for (int c = 0; c < d; c++) {
                    mk[c] = selfWeight * k[c];
                    mv[c] = selfWeight * v[c];
                }
                for (int e : entry.getValue()) {
                    kv.readKey(h, victims[e], ek, 0);
                    kv.readValue(h, victims[e], ev, 0);
                    double w = (merge == Merge.PAPER ? Math.exp(sim[e]) : sim[e]) / norm;
                    for (int c = 0; c < d; c++) {
                        mk[c] += w * ek[c];
                        mv[c] += w * ev[c];
                    }
                }
                for (int c = 0; c < d; c++) {
                    k[c] = (float) mk[c];
                    v[c] = (float) mv[c];
                }
                kv.rewrite(h, r, k, 0, v, 0);
            }
        }

        private static double norm(float[] x, int off, int d) {
            double s = 0;
            for (int c = 0; c < d; c++) s += (double) x[off + c] * x[off + c];
            return Math.sqrt(s);
        }

        @Override
        public EvictionState fork() {
            return new State(this);
        }

        @Override
        public long metadataBytes() {
            long n = 0;
            for (float[][] l : prefillSums) if (l != null) for (float[] h : l) n += 4L * h.length;
            return n;
        }
    }
}
