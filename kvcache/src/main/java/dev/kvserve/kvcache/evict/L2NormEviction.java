package dev.kvserve.kvcache.evict;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.Lanes;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.QueryRows;
import dev.kvserve.kvcache.policy.Params;

/**
 * L2-norm eviction (Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache
 * Compression", EMNLP 2024; methods.md §4): keys with a low L2 norm tend to draw high attention, so
 * each KV head keeps the {@code budget} tokens whose keys have the lowest norm and drops the rest.
 * Query-free and attention-free. The norm of the exact key (rotation does not change it) is stored
 * in a lane when the token arrives; compression runs after every step, as the paper's streaming LM
 * evaluation does, so the cache never holds more than the budget between steps. Layers in
 * {@code skip} (the paper's exceptions, layers 0 and 1 by default) are never compressed.
 */
public final class L2NormEviction implements EvictionPolicy {

    static final int NORM = 0;

    private final Params params;
    private final Budget budget;
    private final int sinks;
    private final Budget window;
    private final LayerSet skip;

    public L2NormEviction(Params params) {
        this.params = params;
        this.budget = (Budget) params.values().get("budget");
        this.sinks = params.getInt("sinks");
        this.window = (Budget) params.values().get("window");
        this.skip = (LayerSet) params.values().get("skip");
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
        return new State(skip.resolve(geometry.layers()));
    }

    @Override
    public int maxRetainedTokens(int layer, int tokens, int stepTokens) {
        if (mightSkip(skip, layer)) return tokens + stepTokens;
        return Retention.maxRetained(budget, sinks, window, tokens, stepTokens);
    }

    /** True unless {@code layer} is surely outside the set (negative indices depend on the layer count). */
    static boolean mightSkip(LayerSet skip, int layer) {
        for (int i : skip.indices()) if (i == layer || i < 0) return true;
        return false;
    }

    private final class State implements EvictionState {
        private final boolean[] skipped;

        State(boolean[] skipped) {
            this.skipped = skipped;
        }

        @Override
        public void onAppend(LayerKv kv, KvRows rows) {
            int d = rows.headDim();
            float[] keys = rows.keysPostRope();
            for (int h = 0; h < rows.kvHeads(); h++) {
                for (int s = Retention.firstNewSlot(kv, h, rows.firstPosition()); s < kv.slots(h); s++) {
                    int p = kv.position(h, s);
                    if (p < rows.firstPosition()) continue;
                    int off = rows.offset(p - rows.firstPosition(), h);
                    double sum = 0;
                    for (int c = 0; c < d; c++) sum += (double) keys[off + c] * keys[off + c];
                    kv.setSlotFloat(h, s, NORM, (float) Math.sqrt(sum));
                }
            }
        }

        @Override
        public void afterAttention(LayerKv kv, QueryRows queries, AttentionWeights weights) {
            if (skipped[kv.layer()]) return;
            int length = queries.firstPosition() + queries.rows();
            int target = budget.tokensFor(length);
            Retention.Protection keep = Retention.Protection.of(sinks, window.tokensFor(length), length, length);
            for (int h = 0; h < kv.geometry().kvHeads(); h++) {
                int head = h;
                Retention.evictDownTo(kv, h, target, keep, s -> -kv.slotFloat(head, s, NORM));
            }
        }

        @Override
        public EvictionState fork() {
            return this;
        }
    }
}
