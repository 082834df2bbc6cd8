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
 * full attention first and then apply the decode rule row by row, each prompt token's query evicting
 * the farthest token of the cache it would have seen had the prompt been fed token by token
 * (methods.md: "evict with the chunk's queries"), not the whole excess with the last query alone.
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
            // a prompt chunk attends in full (the paper does not describe prefill), then is thinned as if streamed
            if (queries.rows() > 1) evict(kv, queries);
        }

        /**
         * Runs the decode rule once per query row of the step, in order: row {@code i} (position
         * {@code p}) sees the cache as it would have been had the step been fed token by token, i.e.
         * the tokens at positions {@code <= p} still live, and evicts the ones farthest from its own
         * query's code until the budget for {@code p + 1} tokens holds (one token a row in steady
         * state). A one-token decode step is the paper's rule exactly: before attention, the new token
         * stays and the farthest other token goes. Later rows' tokens are protected during earlier rows.
         */
        private void evict(LayerKv kv, QueryRows queries) {
            KvGeometry g = kv.geometry();
            int d = g.headDim(), group = g.groupSize();
            int rows = queries.rows(), first = queries.firstPosition();
            float[] r = projections[kv.layer()];
            for (int h = 0; h < g.kvHeads(); h++) {
                int head = h;
                for (int row = 0; row < rows; row++) {
                    int position = first + row, length = position + 1;
                    int later = rows - 1 - row;  // live tokens of this step after the row's own
                    int target = budget.tokensFor(length);
                    if (!accumulated && kv.liveTokens(h) - later <= target) continue;
                    int[][] q = new int[group][];
                    for (int j = 0; j < group; j++) q[j] = code(r, bits, queries.q(), queries.offset(row, h * group + j), d);
                    for (int s = 0; s < kv.slots(h); s++) {
                        int p = kv.position(h, s);
                        if (!kv.isLive(h, s) || p > position) continue;
                        int dist = 0;
                        for (int[] qc : q) for (int w = 0; w < qc.length; w++) dist += Integer.bitCount(qc[w] ^ kv.slotInt(h, s, w));
                        kv.setSlotFloat(h, s, SCORE, accumulated ? kv.slotFloat(h, s, SCORE) + dist : dist);
                    }
                    // the row's own token replaces the victim, so it is protected with sinks and window
                    Retention.Protection keep = Retention.Protection.of(sinks, window.tokensFor(length), length, position);
                    Retention.evictDownTo(kv, h, target + later, keep, s -> -kv.slotFloat(head, s, SCORE));
                }
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
