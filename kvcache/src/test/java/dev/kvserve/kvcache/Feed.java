package dev.kvserve.kvcache;

import dev.kvserve.kvcache.evict.AttentionWeights;
import dev.kvserve.kvcache.select.Selection;
import java.util.TreeSet;

/**
 * Drives one {@link PagedSequence} through the hook sequence the attention layer runs (append,
 * beforeAttention, afterAttention with exact attention-probability sums, advance) with inputs a test
 * chooses, so eviction rules and selectors can be checked on constructed cases without the attention
 * kernel. Probabilities are computed here in double precision over the live (and selected) slots.
 */
public final class Feed implements AutoCloseable {

    public final KvGeometry g;
    public final KvCacheManager manager;
    public final PagedSequence seq;
    /** Selection of the last step, per layer (null = all). */
    public final Selection[] lastSelection;

    public Feed(KvGeometry g, String spec, int blockTokens) {
        this.g = g;
        this.manager = new KvCacheManager(g, 64L << 20, blockTokens);
        this.seq = manager.open(spec);
        this.lastSelection = new Selection[g.layers()];
    }

    /**
     * One layer of one step: stores {@code rows} tokens (keys before RoPE, [rows][kvDim]), runs the
     * hooks with queries {@code q} ([rows][heads*headDim], already rotated) and returns the selection.
     */
    public Selection layer(int layer, float[] q, float[] keysPre, float[] values, int rows, boolean endsPrompt) {
        int start = seq.length(), d = g.headDim();
        float[] post = keysPre.clone();
        for (int r = 0; r < rows; r++) for (int h = 0; h < g.kvHeads(); h++) manager.rope().rotate(post, (r * g.kvHeads() + h) * d, start + r);
        if (!endsPrompt && !seq.promptDone() && rows == 1 && start > 0) seq.finishPrompt(layer);
        boolean ends = endsPrompt && !seq.promptDone();
        seq.append(new KvRows(layer, rows, start, g.kvHeads(), d, keysPre, post, values));
        QueryRows queries = new QueryRows(q, rows, start, g.heads(), d);
        Selection sel = seq.beforeAttention(layer, queries);
        lastSelection[layer] = sel;
        int from = seq.attentionWeightsFrom(layer, start, rows, ends);
        AttentionWeights w = from <= start + rows - 1 ? weights(layer, queries, sel, from) : null;
        seq.afterAttention(layer, queries, w, ends);
        return sel;
    }

    /** Every layer with the same inputs, then advance: a whole decoder step. */
    public Selection step(float[] q, float[] keysPre, float[] values, int rows, boolean endsPrompt) {
        Selection s = null;
        for (int l = 0; l < g.layers(); l++) s = layer(l, q, keysPre, values, rows, endsPrompt);
        seq.advance(rows);
        return s;
    }

    private AttentionWeights weights(int layer, QueryRows queries, Selection sel, int from) {
        int d = g.headDim(), group = g.groupSize();
        float[][] sums = new float[g.kvHeads()][];
        int[] slots = new int[g.kvHeads()];
        LayerKv kv = seq.layer(layer);
        float[] k = new float[d];
        for (int h = 0; h < g.kvHeads(); h++) {
            int n = kv.slots(h);
            slots[h] = n;
            sums[h] = new float[group * n];
            double[][] keys = new double[n][];
            for (int s = 0; s < n; s++) {
                if (!kv.isLive(h, s)) continue;
                kv.readKey(h, s, k, 0);
                keys[s] = new double[d];
                for (int c = 0; c < d; c++) keys[s][c] = k[c];
            }
            for (int j = 0; j < group; j++) {
                int qh = h * group + j;
                boolean[] chosen = new boolean[n];
                if (sel == null) java.util.Arrays.fill(chosen, true);
                else for (int s : sel.slots(qh)) if (s < n) chosen[s] = true;
                for (int r = 0; r < queries.rows(); r++) {
                    int p = queries.firstPosition() + r;
                    if (p < from) continue;
                    double[] logit = new double[n];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int s = 0; s < n; s++) {
                        if (keys[s] == null || !chosen[s] || kv.position(h, s) > p) continue;
                        double dot = 0;
                        for (int c = 0; c < d; c++) dot += queries.q()[queries.offset(r, qh) + c] * keys[s][c];
                        logit[s] = dot / Math.sqrt(d);
                        max = Math.max(max, logit[s]);
                    }
                    double sum = 0;
                    for (int s = 0; s < n; s++) if (keys[s] != null && chosen[s] && kv.position(h, s) <= p) sum += Math.exp(logit[s] - max);
                    for (int s = 0; s < n; s++) {
                        if (keys[s] != null && chosen[s] && kv.position(h, s) <= p) sums[h][j * n + s] += (float) (Math.exp(logit[s] - max) / sum);
                    }
                }
            }
        }
        return new AttentionWeights(group, queries.rows(), slots, sums);
    }

    /** Positions of the live tokens of one layer and KV head. */
    public TreeSet<Integer> live(int layer, int kvHead) {
        TreeSet<Integer> out = new TreeSet<>();
        LayerKv kv = seq.layer(layer);
        for (int s = 0; s < kv.slots(kvHead); s++) if (kv.isLive(kvHead, s)) out.add(kv.position(kvHead, s));
        return out;
    }

    /** Positions a query head's selection covers in a layer (all live when the selection is null). */
    public TreeSet<Integer> selected(int layer, int queryHead) {
        Selection sel = lastSelection[layer];
        int kvHead = queryHead / g.groupSize();
        if (sel == null) return live(layer, kvHead);
        TreeSet<Integer> out = new TreeSet<>();
        LayerKv kv = seq.layer(layer);
        for (int s : sel.slots(queryHead)) if (s < kv.slots(kvHead) && kv.isLive(kvHead, s)) out.add(kv.position(kvHead, s));
        return out;
    }

    /** The stored key of a live position (as attention sees it), or null. */
    public float[] key(int layer, int kvHead, int position) {
        LayerKv kv = seq.layer(layer);
        for (int s = 0; s < kv.slots(kvHead); s++) {
            if (kv.position(kvHead, s) == position) {
                float[] k = new float[g.headDim()];
                kv.readKey(kvHead, s, k, 0);
                return k;
            }
        }
        return null;
    }

    public float[] value(int layer, int kvHead, int position) {
        LayerKv kv = seq.layer(layer);
        for (int s = 0; s < kv.slots(kvHead); s++) {
            if (kv.position(kvHead, s) == position) {
                float[] v = new float[g.headDim()];
                kv.readValue(kvHead, s, v, 0);
                return v;
            }
        }
        return null;
    }

    @Override
    public void close() {
        manager.close();
    }
}
