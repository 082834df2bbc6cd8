package dev.kvserve.kvcache.tier;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.policy.Params;

/** Every block stays in the pool's memory. */
public final class PrimaryTier implements TierPlacement {

    public static final String NAME = "primary";

    private final Params params;

    public PrimaryTier(Params params) {
        this.params = params;
    }

    @Override
    public Params params() {
        return params;
    }

    @Override
    public String primaryTier() {
        return NAME;
    }

    @Override
    public TierState open(KvGeometry geometry, int blockTokens) {
        return TierState.NONE;
    }
}
