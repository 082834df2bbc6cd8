package dev.kvserve.kvcache.evict;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.Lanes;
import dev.kvserve.kvcache.policy.PolicyComponent;

/**
 * Which tokens stay in a sequence's cache, per layer and KV head, and what happens to those that
 * leave (dropped, or merged into kept ones). Immutable, parsed from a spec; {@link #open} makes the
 * per-sequence {@link EvictionState} that receives the cache's hooks.
 */
public interface EvictionPolicy extends PolicyComponent {

    /** Per-sequence state; validates against the geometry (IllegalArgumentException if it does not fit). */
    EvictionState open(KvGeometry geometry, int blockTokens);

    /** Per-slot lanes the state uses (scores, norms, codes). */
    default Lanes lanes() {
        return Lanes.NONE;
    }

    /**
     * Most tokens one KV head of {@code layer} holds at any time (during a step included) once the
     * sequence has seen {@code tokens} tokens, for admission control. Steps of more than one token may
     * hold the step's tokens on top of the retained ones; pass {@code stepTokens} for that.
     */
    int maxRetainedTokens(int layer, int tokens, int stepTokens);

    /**
     * Most blocks one (layer, KV head) table needs. {@code perTokenFormat} tells whether the format
     * lets the cache move slots into holes (then dead slots cost nothing beyond a block); otherwise
     * only blocks whose every slot died are freed.
     */
    default int maxBlocks(int layer, int tokens, int stepTokens, int blockTokens, boolean perTokenFormat) {
        int all = tokens + stepTokens;
        int retained = Math.min(all, maxRetainedTokens(layer, tokens, stepTokens));
        if (!perTokenFormat) return ceilDiv(all, blockTokens);
        return Math.min(ceilDiv(all, blockTokens), ceilDiv(retained, blockTokens) + 1);
    }

    static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }
}
