package dev.kvserve.kvcache.evict;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.QueryRows;
import dev.kvserve.kvcache.policy.Params;

/**
 * StreamingLLM (Xiao et al., "Efficient Streaming Language Models with Attention Sinks", ICLR 2024):
 * keep the first {@code sinks} tokens and the most recent {@code window} tokens, drop everything in
 * between, physically (blocks go back to the pool). {@code window} is a token count or a fraction of
 * the sequence (then the sinks come on top of it). Keys are placed at positions within the cache
 * ({@link KeyWindow}), so distances never exceed sinks + window. Within a prefill chunk each query
 * sees only its own window, so chunked prefill computes what token-by-token decoding would.
 */
public final class SinkWindowEviction implements EvictionPolicy {

    private final Params params;
    private final int sinks;
    private final Budget window;

    public SinkWindowEviction(Params params) {
        this.params = params;
        this.sinks = params.getInt("sinks");
        this.window = (Budget) params.values().get("window");
    }

    @Override
    public Params params() {
        return params;
    }

    public int sinks() {
        return sinks;
    }

    /** The recent window: a token count, or a fraction of the sequence so far. */
    public Budget window() {
        return window;
    }

    @Override
    public EvictionState open(KvGeometry geometry, int blockTokens) {
        return new State(new KeyWindow(sinks, window));
    }

    @Override
    public int maxRetainedTokens(int layer, int tokens, int stepTokens) {
        return Math.min(tokens, sinks + window.tokensFor(tokens + stepTokens)) + stepTokens;
    }

    @Override
    public int maxBlocks(int layer, int tokens, int stepTokens, int blockTokens, boolean perTokenFormat) {
        int all = EvictionPolicy.ceilDiv(tokens + stepTokens, blockTokens);
        if (perTokenFormat) return EvictionPolicy.super.maxBlocks(layer, tokens, stepTokens, blockTokens, true);
        // blocks that cannot be compacted: the ones holding sinks, plus a window not aligned to blocks
        int recent = window.tokensFor(tokens + stepTokens);
        int bound = EvictionPolicy.ceilDiv(sinks, blockTokens) + EvictionPolicy.ceilDiv(recent + stepTokens - 1, blockTokens) + 1;
        return Math.min(all, bound);
    }

    private record State(KeyWindow keyWindow) implements EvictionState {

        @Override
        public void afterAttention(LayerKv kv, QueryRows queries, AttentionWeights weights) {
            int newest = queries.firstPosition() + queries.rows() - 1;
            int oldestKept = newest - keyWindow.windowAt(newest) + 1;
            for (int h = 0; h < kv.geometry().kvHeads(); h++) {
                int n = kv.slots(h);
                for (int s = 0; s < n; s++) {
                    int p = kv.position(h, s);
                    if (p >= keyWindow.sinks() && p < oldestKept) kv.evict(h, s);
                }
            }
        }

        @Override
        public EvictionState fork() {
            return this;
        }
    }
}
