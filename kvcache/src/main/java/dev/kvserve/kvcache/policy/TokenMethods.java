package dev.kvserve.kvcache.policy;

import dev.kvserve.kvcache.evict.Budget;
import dev.kvserve.kvcache.evict.D2oEviction;
import dev.kvserve.kvcache.evict.HashEviction;
import dev.kvserve.kvcache.evict.HeavyHitterEviction;
import dev.kvserve.kvcache.evict.L2NormEviction;
import dev.kvserve.kvcache.evict.LayerSet;
import dev.kvserve.kvcache.evict.SnapKvEviction;
import dev.kvserve.kvcache.select.ClusterKvSelector;
import dev.kvserve.kvcache.select.QuestSelector;
import java.util.List;

/**
 * The token-level methods of methods.md §4–8: eviction rules {@code l2}, {@code hashevict},
 * {@code d2o}, {@code h2o}, {@code snapkv} and sparse-recall selectors {@code quest},
 * {@code clusterkv}. Defaults are each paper's (or its reference code's) settings; {@code budget}
 * and {@code window} take a token count or a fraction of the sequence (see {@link Budget}).
 */
public final class TokenMethods implements KvMethodProvider {

    @Override
    public List<MethodDef> methods() {
        return List.of(
                new MethodDef("l2", ComponentKind.EVICTION,
                        "L2-norm eviction: each KV head keeps the budget keys of lowest L2 norm",
                        List.of(Budget.param("budget", "0.5", 1), ParamSpec.ofInt("sinks", 0, 0, 1 << 20),
                                Budget.param("window", "0", 0), LayerSet.param("skip", "0;1")),
                        L2NormEviction::new),
                new MethodDef("hashevict", ComponentKind.EVICTION,
                        "HashEvict: before attention, evict the key whose SimHash is farthest (Hamming) from the query's",
                        List.of(Budget.param("budget", "0.5", 1), ParamSpec.ofInt("sinks", 4, 0, 1 << 20),
                                Budget.param("window", "10", 0), ParamSpec.ofInt("bits", 16, 1, 64),
                                ParamSpec.ofChoice("score", "current", List.of("current", "accumulated")),
                                ParamSpec.ofInt("seed", 0, 0, Integer.MAX_VALUE)),
                        HashEviction::new),
                new MethodDef("d2o", ComponentKind.EVICTION,
                        "D2O: layer budgets from attention density, heavy-hitter eviction, evicted tokens merged into similar kept ones",
                        List.of(Budget.param("budget", "0.2", 1), Budget.param("window", "0.1", 0),
                                ParamSpec.ofInt("sinks", 4, 0, 1 << 20), LayerSet.param("skip", "0;1;-1"),
                                ParamSpec.ofDouble("alpha", 0.5, 0, 1), ParamSpec.ofDouble("beta", 0.5, 0, 1),
                                ParamSpec.ofChoice("merge", "paper", List.of("paper", "code", "none"))),
                        D2oEviction::new),
                new MethodDef("h2o", ComponentKind.EVICTION,
                        "H2O: keep the recent window and the heavy hitters by accumulated attention",
                        List.of(Budget.param("budget", "0.2", 1), Budget.param("window", "0.1", 0),
                                ParamSpec.ofInt("sinks", 0, 0, 1 << 20),
                                ParamSpec.ofChoice("reduce", "sum", List.of("sum", "mean", "max"))),
                        HeavyHitterEviction::new),
                new MethodDef("snapkv", ComponentKind.EVICTION,
                        "SnapKV: once after the prompt, keep the prefix tokens the observation window votes for",
                        List.of(Budget.param("budget", "2048", 2), ParamSpec.ofInt("sinks", 0, 0, 1 << 20),
                                ParamSpec.ofInt("window", 32, 1, 1 << 20),
                                ParamSpec.ofInt("kernel", 5, 1, 1025), ParamSpec.ofChoice("pooling", "avg", List.of("avg", "max"))),
                        SnapKvEviction::new),
                new MethodDef("quest", ComponentKind.SELECTION,
                        "Quest: per-page key min/max bounds, each query attends to its top pages",
                        List.of(Budget.param("budget", "1024", 1), ParamSpec.ofInt("page", 16, 1, 4096),
                                LayerSet.param("skip", "0;1")),
                        QuestSelector::new),
                new MethodDef("clusterkv", ComponentKind.SELECTION,
                        "ClusterKV: keys clustered per head (cosine k-means), each query recalls its best clusters",
                        List.of(Budget.param("budget", "1024", 1), ParamSpec.ofInt("sinks", 16, 0, 1 << 20),
                                ParamSpec.ofInt("clusters", 400, 1, 1 << 20), ParamSpec.ofInt("iterations", 20, 0, 10_000),
                                ParamSpec.ofInt("window", 320, 1, 1 << 20), ParamSpec.ofInt("window_clusters", 8, 1, 1 << 20),
                                LayerSet.param("skip", "0;1"), ParamSpec.ofChoice("gqa", "head", List.of("head", "avg")),
                                ParamSpec.ofInt("seed", 0, 0, Integer.MAX_VALUE)),
                        ClusterKvSelector::new));
    }
}
