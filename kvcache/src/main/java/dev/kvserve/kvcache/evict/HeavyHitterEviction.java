package dev.kvserve.kvcache.evict;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.Lanes;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.QueryRows;
import dev.kvserve.kvcache.policy.Params;
import java.util.Locale;

/**
 * H2O (Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language
 * Models", NeurIPS 2023; methods.md §8.2): every token accumulates the attention probability it
 * receives from every query (prefill rows included, reduced over the GQA group by {@code reduce},
 * sum by default as H2O does); after each step each KV head keeps its recent {@code window} tokens
 * plus the tokens with the largest accumulated score, {@code budget} tokens in all (default 20% of
 * the sequence = 10% heavy hitters + 10% recent, the paper's setting).
 */
public final class HeavyHitterEviction implements EvictionPolicy {

    static final int SCORE = 0;

    private final Params params;
    private final Budget budget;
    private final Budget window;
    private final int sinks;
    private final AttentionWeights.Reduction reduction;

    public HeavyHitterEviction(Params params) {
        this.params = params;
        this.budget = (Budget) params.values().get("budget");
        this.window = (Budget) params.values().get("window");
        this.sinks = params.getInt("sinks");
        this.reduction = AttentionWeights.Reduction.valueOf(params.getString("reduce").toUpperCase(Locale.ROOT));
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
        return new State();
    }

    @Override
    public int maxRetainedTokens(int layer, int tokens, int stepTokens) {
        return Retention.maxRetained(budget, sinks, window, tokens, stepTokens);
    }

    private final class State implements EvictionState {

        @Override
        public int attentionWeightsFrom(int layer, int stepStart, int stepTokens, boolean endsPrompt) {
            return 0;
        }

        @Override
        public void afterAttention(LayerKv kv, QueryRows queries, AttentionWeights weights) {
            if (weights == null) throw new IllegalStateException("h2o needs attention weights; the attention implementation gave none");
            int length = queries.firstPosition() + queries.rows();
            int target = budget.tokensFor(length);
            Retention.Protection keep = Retention.Protection.of(sinks, window.tokensFor(length), length, length);
            for (int h = 0; h < kv.geometry().kvHeads(); h++) {
                int n = Math.min(kv.slots(h), weights.slots(h));
                for (int s = 0; s < n; s++) {
                    if (kv.isLive(h, s)) kv.setSlotFloat(h, s, SCORE, kv.slotFloat(h, s, SCORE) + weights.reduce(h, s, reduction));
                }
                int head = h;
                Retention.evictDownTo(kv, h, target, keep, s -> kv.slotFloat(head, s, SCORE));
            }
        }

        @Override
        public EvictionState fork() {
            return this;
        }
    }
}
