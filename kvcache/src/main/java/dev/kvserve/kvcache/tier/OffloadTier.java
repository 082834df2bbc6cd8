package dev.kvserve.kvcache.tier;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.policy.ComponentKind;
import dev.kvserve.kvcache.policy.MethodDef;
import dev.kvserve.kvcache.policy.ParamSpec;
import dev.kvserve.kvcache.policy.Params;
import java.nio.file.Path;
import java.util.List;

/**
 * Offload tiers below the primary pool (methods.md §9.6): host RAM with its own budget, an optional
 * SSD file, and optionally an emulated computational-storage device that attends over the SSD
 * blocks where they lie (§9.2–9.3). Spec:
 * {@code offload:host=2GiB,ssd=/path,ssd_budget=20GiB,resident=0,prefetch=true,io_threads=2,csd=false}.
 * The host and SSD budgets are shared by every sequence of a cache manager using the same spec.
 */
public final class OffloadTier implements TierPlacement {

    public static final String NAME = "offload";

    public static MethodDef definition() {
        return new MethodDef(NAME, ComponentKind.TIER,
                "host RAM, SSD file and emulated computational storage below the pool; LRU demotion, prefetch, swap",
                // Everything but the two behaviour switches names or sizes a server resource.
                List.of(ByteSizes.param("host", "1GiB").forOperatorOnly(),
                        ParamSpec.ofText("ssd", "none").forOperatorOnly(),
                        ByteSizes.param("ssd_budget", "16GiB").forOperatorOnly(),
                        ByteSizes.param("resident", "0").forOperatorOnly(),
                        ParamSpec.ofBoolean("prefetch", true),
                        ByteSizes.param("prefetch_budget", "64MiB").forOperatorOnly(),
                        ParamSpec.ofInt("io_threads", 2, 1, 64).forOperatorOnly(),
                        ParamSpec.ofBoolean("csd", false),
                        ParamSpec.ofInt("csd_threads", 2, 1, 64).forOperatorOnly(),
                        ByteSizes.param("csd_memory", "16MiB").forOperatorOnly()),
                OffloadTier::new);
    }

    private final Params params;
    final long host;
    final Path ssd;
    final long ssdBudget;
    final long resident;
    final boolean prefetch;
    final long prefetchBudget;
    final int ioThreads;
    final boolean csd;
    final int csdThreads;
    final long csdMemory;

    public OffloadTier(Params params) {
        this.params = params;
        this.host = (Long) params.values().get("host");
        String ssdText = params.getString("ssd");
        this.ssd = ssdText.equals("none") ? null : Path.of(ssdText);
        this.ssdBudget = (Long) params.values().get("ssd_budget");
        this.resident = (Long) params.values().get("resident");
        this.prefetch = params.getBoolean("prefetch");
        this.prefetchBudget = (Long) params.values().get("prefetch_budget");
        this.ioThreads = params.getInt("io_threads");
        this.csd = params.getBoolean("csd");
        this.csdThreads = params.getInt("csd_threads");
        this.csdMemory = (Long) params.values().get("csd_memory");
        if (csd && ssd == null) throw new IllegalArgumentException("offload: csd=true needs an SSD directory (ssd=/path)");
        if (host == 0 && ssd == null) throw new IllegalArgumentException("offload: needs host > 0 or an SSD directory (ssd=/path)");
    }

    /**
     * The emulated computational storage attends over SSD blocks where they lie, by their stored
     * slots; an eviction rule moves and frees slots under it (sink, H2O, D2O and the rest fail in the
     * step), so the two are refused together.
     */
    @Override
    public void checkComposition(dev.kvserve.kvcache.KvCachePolicy policy) {
        if (csd && policy.eviction().isPresent()) {
            throw new IllegalArgumentException("offload with csd=true cannot run with an eviction rule ('"
                    + policy.eviction().get().params().method() + "'): computational storage attends over blocks as stored; "
                    + "use csd=false or drop the eviction rule");
        }
    }

    @Override
    public Params params() {
        return params;
    }

    @Override
    public String primaryTier() {
        return "primary";
    }

    @Override
    public TierState open(KvGeometry geometry, int blockTokens) {
        throw new IllegalStateException("offload tier needs the sequence's tier context");
    }

    @Override
    public TierState open(TierContext context) {
        return new OffloadState(this, context, context.shared(storeKey(), this::newStore));
    }

    @Override
    public void prepare(Resources resources) {
        resources.shared(storeKey(), this::newStore);
    }

    /**
     * One store per set of resources, whatever the per-sequence switches (prefetch): a server's
     * clients share the operator's stores instead of each spec building its own.
     */
    private String storeKey() {
        return "tier:host=" + host + ",ssd=" + (ssd == null ? "none" : ssd) + ",ssd_budget=" + ssdBudget
                + ",io_threads=" + ioThreads + ",prefetch_budget=" + prefetchBudget
                + (csd ? ",csd_threads=" + csdThreads + ",csd_memory=" + csdMemory : "");
    }

    private TierStore newStore() {
        return new TierStore(host, ssd, ssdBudget, ioThreads, prefetchBudget, csd ? csdThreads : 0, csdMemory);
    }
}
