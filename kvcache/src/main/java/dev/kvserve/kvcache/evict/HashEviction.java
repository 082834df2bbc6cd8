package dev.kvserve.kvcache.evict;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.Lanes;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.QueryRows;
import dev.kvserve.kvcache.policy.Params;
import java.util.Random;

/**
 * HashEvict (Liu et al., "HashEvict: A Pre-Attention KV Cache Eviction Strategy using
 * Locality-Sensitive Hashing", arXiv 2412.16187; methods.md §5). Each layer has {@code bits} random
 * Gaussian hyperplanes (fixed by {@code seed}); every cached key keeps its SimHash code
 * {@code sign(R k)} in int lanes beside it. At a decode step, <em>before</em> attention, the query's
 * code is compared with every cached code: the Hamming distance estimates the angle between query
 * and key (θ ≈ π·dist/bits), and the token with the largest distance (summed over the query heads of
 * the GQA group) is the one expected to get the least attention, so it is evicted to make room for
 * the new token. No attention scores are computed or needed.
 *
 * <p>{@code score=current} decides on the current query's distances alone (the paper's description);
 * {@code score=accumulated} ranks by distances summed over all steps so far (methods.md's alternative,
 * because the paper's aggregation over steps is not specified). Prompt steps (several tokens) run
 * full attention first and then evict down to the budget with the last prompt token's query.
 */
public final class HashEviction implements EvictionPolicy {

    static final int SCORE = 0;

    private final Params params;
    private final Budget budget;
    private final int sinks;
    private final Budget window;
    private final int bits;
    private final boolean accumulated;
    private final long seed;

    public HashEviction(Params params) {
        this.params = params;
        this.budget = (Budget) params.values().get("budget");
        this.sinks = params.getInt("sinks");
        this.window = (Budget) params.values().get("window");
        this.bits = params.getInt("bits");
        this.accumulated = params.getString("score").equals("accumulated");
        this.seed = params.getInt("seed");
    }

    @Override
    public Params params() {
        return params;
    }

    public int bits() {
        return bits;
    }

    @Override
    public Lanes lanes() {
        return new Lanes(1, (bits + 31) / 32);
    }

    @Override
    public EvictionState open(KvGeometry geometry, int blockTokens) {
        return new State(projections(geometry));
    }

    @Override
    public int maxRetainedTokens(int layer, int tokens, int stepTokens) {
        return Retention.maxRetained(budget, sinks, window, tokens, stepTokens);
    }

    /** The random hyperplanes of every layer: [layer][bits * headDim], i.i.d. N(0, 1). */
    float[][] projections(KvGeometry geometry) {
        int d = geometry.headDim();
        float[][] r = new float[geometry.layers()][bits * d];
        for (int l = 0; l < r.length; l++) {
            Random rnd = new Random(seed * 1_000_003L + l);
            for (int i = 0; i < r[l].length; i++) r[l][i] = (float) rnd.nextGaussian();
        }
        return r;
    }

    /** SimHash code of x[off..off+d) under hyperplanes {@code r}: bit i = (r_i · x >= 0), words of 32 bits. */
    static int[] code(float[] r, int bits, float[] x, int off, int d) {
        int[] words = new int[(bits + 31) / 32];
        for (int i = 0; i < bits; i++) {
            double dot = 0;
            for (int c = 0; c < d; c++) dot += (double) r[i * d + c] * x[off + c];
            if (dot >= 0) words[i >>> 5] |= 1 << (i & 31);
        }
        return words;
    }

    private final class State implements EvictionState {
        private final float[][] projections;

        State(float[][] projections) {
            this.projections = projections;
        }

        @Override
        public void onAppend(LayerKv kv, KvRows rows) {
            float[] r = projections[kv.layer()];
            int d = rows.headDim();
            for (int h = 0; h < rows.kvHeads(); h++) {
                for (int s = Retention.firstNewSlot(kv, h, rows.firstPosition()); s < kv.slots(h); s++) {
                    int p = kv.position(h, s);
                    if (p < rows.firstPosition()) continue;
                    int[] c = code(r, bits, rows.keysPostRope(), rows.offset(p - rows.firstPosition(), h), d);
                    for (int w = 0; w < c.length; w++) kv.setSlotInt(h, s, w, c[w]);
                }
            }
        }

        @Override
        public void beforeAttention(LayerKv kv, QueryRows queries) {
            if (queries.rows() == 1) evict(kv, queries);
        }

        @Override
        public void afterAttention(LayerKv kv, QueryRows queries, AttentionWeights weights) {
            if (queries.rows() > 1) evict(kv, queries);
        }

        /** Scores every token by its Hamming distance to the step's last query and evicts the farthest. */
        private void evict(LayerKv kv, QueryRows queries) {
            KvGeometry g = kv.geometry();
            int d = g.headDim(), group = g.groupSize();
            int row = queries.rows() - 1;
            int length = queries.firstPosition() + queries.rows();
            float[] r = projections[kv.layer()];
            // before attention the new token must stay (it replaces the victim); after a prompt step only sinks and window are kept
            int protectFrom = queries.rows() == 1 ? queries.firstPosition() : length;
            Retention.Protection keep = Retention.Protection.of(sinks, window.tokensFor(length), length, protectFrom);
            int target = budget.tokensFor(length);
            for (int h = 0; h < g.kvHeads(); h++) {
                if (!accumulated && kv.liveTokens(h) <= target) continue;
                int[][] q = new int[group][];
                for (int j = 0; j < group; j++) q[j] = code(r, bits, queries.q(), queries.offset(row, h * group + j), d);
                for (int s = 0; s < kv.slots(h); s++) {
                    if (!kv.isLive(h, s)) continue;
                    int dist = 0;
                    for (int[] qc : q) for (int w = 0; w < qc.length; w++) dist += Integer.bitCount(qc[w] ^ kv.slotInt(h, s, w));
                    kv.setSlotFloat(h, s, SCORE, accumulated ? kv.slotFloat(h, s, SCORE) + dist : dist);
                }
                int head = h;
                Retention.evictDownTo(kv, h, target, keep, s -> -kv.slotFloat(head, s, SCORE));
            }
        }

        @Override
        public EvictionState fork() {
            return this;
        }

        @Override
        public long metadataBytes() {
            long n = 0;
            for (float[] p : projections) n += 4L * p.length;
            return n;
        }
    }
}
