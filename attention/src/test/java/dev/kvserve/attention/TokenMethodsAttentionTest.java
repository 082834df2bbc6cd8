package dev.kvserve.attention;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.Lanes;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.QueryRows;
import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.policy.ComponentKind;
import dev.kvserve.kvcache.policy.MethodDef;
import dev.kvserve.kvcache.policy.Params;
import dev.kvserve.kvcache.policy.PolicyRegistry;
import dev.kvserve.kvcache.select.ClusterKvSelector;
import dev.kvserve.kvcache.select.QuestSelector;
import dev.kvserve.kvcache.select.Selection;
import dev.kvserve.kvcache.select.SelectorState;
import dev.kvserve.kvcache.select.TokenSelector;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Function;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The token-level methods (l2, hashevict, d2o, h2o, snapkv, quest, clusterkv) composed with storage
 * formats and run through {@link PagedAttention} as the decoder drives it (RoPE on, GQA, prompt +
 * decode + a multi-token chunk): every output must equal the naive reference attention over exactly
 * the tokens the method left visible (evicted tokens gone, selected tokens only), exactly for fp32
 * and within the format's error for fp16 / int4; blocks go back to the pool.
 */
class TokenMethodsAttentionTest {

    static final KvGeometry G = new KvGeometry(2, 4, 2, 8, 4096, new RopeConfig(8, 10000f, 1f, true));

    /** Positions each (layer/queryHead) last selected; absent = all. */
    static final Map<String, Set<Integer>> CHOSEN = new ConcurrentHashMap<>();

    static {
        register("recquest", "quest", QuestSelector::new);
        register("recclusterkv", "clusterkv", ClusterKvSelector::new);
    }

    /** A copy of a selector under another name that records what it selects. */
    static void register(String name, String original, Function<Params, TokenSelector> factory) {
        if (PolicyRegistry.all().stream().anyMatch(d -> d.name().equals(name))) return;
        MethodDef def = PolicyRegistry.get(original);
        PolicyRegistry.register(new MethodDef(name, ComponentKind.SELECTION, "records " + original, def.params(),
                p -> new Recording(p, factory.apply(p))));
    }

    record Recording(Params params, TokenSelector inner) implements TokenSelector {
        @Override
        public Lanes lanes() {
            return inner.lanes();
        }

        @Override
        public SelectorState open(KvGeometry geometry, int blockTokens) {
            SelectorState s = inner.open(geometry, blockTokens);
            return new SelectorState() {
                @Override
                public void onAppend(LayerKv kv, KvRows rows) {
                    s.onAppend(kv, rows);
                }

                @Override
                public void afterPrefill(LayerKv kv) {
                    s.afterPrefill(kv);
                }

                @Override
                public Selection select(LayerKv kv, QueryRows queries) {
                    Selection sel = s.select(kv, queries);
                    for (int h = 0; h < geometry.heads(); h++) {
                        String key = kv.layer() + "/" + h;
                        if (sel == null) {
                            CHOSEN.remove(key);
                            continue;
                        }
                        Set<Integer> pos = new HashSet<>();
                        int kvHead = h / geometry.groupSize();
                        for (int slot : sel.slots(h)) if (slot < kv.slots(kvHead) && kv.isLive(kvHead, slot)) pos.add(kv.position(kvHead, slot));
                        CHOSEN.put(key, pos);
                    }
                    return sel;
                }

                @Override
                public SelectorState fork() {
                    return this;
                }
            };
        }
    }

    static Set<Integer> live(Harness.Seq s, int layer, int kvHead) {
        Set<Integer> out = new HashSet<>();
        LayerKv kv = s.cache.layer(layer);
        for (int slot = 0; slot < kv.slots(kvHead); slot++) if (kv.isLive(kvHead, slot)) out.add(kv.position(kvHead, slot));
        return out;
    }

    static double error(float[] paged, float[] ref, double bound) {
        return bound < 1e-3 ? Harness.maxAbsDiff(paged, ref) : Harness.relativeError(paged, ref);
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "fp32+l2:budget=12,sinks=2,window=3,skip=none | 2e-5",
            "fp32+h2o:budget=12,window=4 | 2e-5",
            "fp32+hashevict:budget=12,window=2,bits=16 | 2e-5",
            "fp32+hashevict:budget=0.5,window=2,score=accumulated | 2e-5",
            "fp32+snapkv:budget=12,window=4,kernel=3 | 2e-5",
            "fp32+d2o:budget=0.4,window=0.1,skip=none,merge=none | 2e-5",
            "fp16+l2:budget=0.5,skip=1 | 5e-3",
            "fp16+h2o:budget=0.3,window=0.1,reduce=mean | 5e-3",
            "int4:group=4+h2o:budget=12,window=4 | 0.2",
            "int4:group=4+hashevict:budget=12,window=2 | 0.2",
            "int8+snapkv:budget=0.5,window=4 | 0.05",
    })
    void evictionRulesAttendExactlyOverTheTokensTheyKeep(String spec, double bound) {
        boolean preAttention = spec.contains("hashevict");
        try (Harness h = new Harness(G, 16 << 20, 4, 2, 11)) {
            Harness.Seq s = h.open(spec);
            int[] steps = {20, 1, 1, 1, 5, 1, 1, 1, 1, 1, 1, 1};
            for (int i = 0; i < steps.length; i++) {
                int n = steps[i];
                Map<String, Set<Integer>> before = new HashMap<>();
                for (int l = 0; l < G.layers(); l++) for (int kv = 0; kv < G.kvHeads(); kv++) before.put(l + "/" + kv, live(s, l, kv));
                int start = s.cache.length();
                boolean decode = n == 1 && i > 0;
                Harness.StepResult r = h.stepPerLayer(List.of(s), new int[] {n}, new boolean[] {i == 0}, layer -> {
                    Map<Integer, Set<Integer>> visible = new HashMap<>();
                    for (int kv = 0; kv < G.kvHeads(); kv++) {
                        visible.put(kv, preAttention && decode ? live(s, layer, kv) : before.get(layer + "/" + kv));
                    }
                    return (head, qp, kp) -> kp >= start || visible.get(head / G.groupSize()).contains(kp);
                });
                for (int l = 0; l < G.layers(); l++) {
                    assertThat(error(r.paged()[l], r.reference()[l], bound)).as("%s step %d layer %d", spec, i, l).isLessThan(bound);
                }
                assertThat(s.cache.bytesHeld()).isLessThanOrEqualTo(h.manager.bytesFor(s.cache.policy(), s.cache.length()));
                assertThat(h.manager.stats().bytesUsed()).isEqualTo(s.cache.bytesHeld());
            }
            long full = h.manager.bytesFor(KvCachePolicy.parse(s.cache.policy().format().spec()), s.cache.length());
            assertThat(s.cache.bytesHeld()).as("evicted tokens' blocks went back to the pool").isLessThan(full);
        }
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "fp32+recquest:budget=8,page=4,skip=none | 2e-5",
            "fp32+recquest:budget=8,page=4,skip=0 | 2e-5",
            "fp32+recclusterkv:budget=10,sinks=2,clusters=4,window=4,window_clusters=2,skip=none | 2e-5",
            "fp32+recclusterkv:budget=10,sinks=2,clusters=4,window=4,window_clusters=2,skip=none,gqa=avg | 2e-5",
            "fp16+recquest:budget=0.4,page=4,skip=none | 5e-3",
            "int4:group=4+recclusterkv:budget=256,skip=none | 0.2",
            "int4:group=4+recclusterkv:budget=10,sinks=2,clusters=4,window=4,window_clusters=2,skip=none | 0.2",
            "fp32+h2o:budget=16,window=4+recquest:budget=8,page=4,skip=none | 2e-5",
    })
    void selectorsAttendExactlyOverTheSelectedTokens(String spec, double bound) {
        CHOSEN.clear();
        try (Harness h = new Harness(G, 16 << 20, 4, 2, 12)) {
            Harness.Seq s = h.open(spec);
            int[] steps = {24, 1, 1, 1, 1, 3, 1, 1, 1, 1, 1, 1, 1};
            int sparseSteps = 0;
            for (int i = 0; i < steps.length; i++) {
                int n = steps[i];
                // an eviction rule in front of the selector: only tokens retained before the step (or new) exist
                Map<String, Set<Integer>> before = new HashMap<>();
                for (int l = 0; l < G.layers(); l++) for (int kv = 0; kv < G.kvHeads(); kv++) before.put(l + "/" + kv, live(s, l, kv));
                int start = s.cache.length();
                Harness.StepResult r = h.stepPerLayer(List.of(s), new int[] {n}, new boolean[] {i == 0}, layer -> {
                    Map<Integer, Set<Integer>> chosen = new HashMap<>();
                    for (int q = 0; q < G.heads(); q++) chosen.put(q, CHOSEN.get(layer + "/" + q));
                    return (head, qp, kp) -> (kp >= start || before.get(layer + "/" + head / G.groupSize()).contains(kp))
                            && (chosen.get(head) == null || chosen.get(head).contains(kp));
                });
                if (n == 1 && CHOSEN.containsKey("1/0")) sparseSteps++;
                for (int l = 0; l < G.layers(); l++) {
                    assertThat(error(r.paged()[l], r.reference()[l], bound)).as("%s step %d layer %d", spec, i, l).isLessThan(bound);
                }
                if (n > 1) assertThat(CHOSEN).as("prompt and chunk steps attend densely").doesNotContainKey("1/0");
            }
            if (!spec.contains("budget=256")) assertThat(sparseSteps).as("decode steps read a subset").isGreaterThan(5);
            assertThat(h.manager.stats().bytesUsed()).isEqualTo(s.cache.bytesHeld());
        }
    }

    @Test
    void forkedSequencesKeepEvictingIndependently() {
        try (Harness h = new Harness(G, 16 << 20, 4, 2, 13)) {
            Harness.Seq a = h.open("fp32+h2o:budget=10,window=3");
            h.step(List.of(a), new int[] {16}, new boolean[] {true}, null);
            Harness.Seq b = h.fork(a);
            for (int step = 0; step < 6; step++) {
                Map<String, Set<Integer>> before = new HashMap<>();
                for (Harness.Seq s : List.of(a, b)) {
                    for (int kv = 0; kv < G.kvHeads(); kv++) before.put(s.hashCode() + "/" + kv, live(s, 1, kv));
                }
                int start = a.cache.length();
                Harness.StepResult r = h.stepPerLayer(List.of(a, b), new int[] {1, 1}, null, layer -> null);
                // layer 1 checked against each sequence's own retained set
                for (int i = 0; i < 2; i++) {
                    Harness.Seq s = i == 0 ? a : b;
                    float[] q = java.util.Arrays.copyOfRange(r.q()[1], r.firstRow()[i] * G.heads() * 8, (r.firstRow()[i] + 1) * G.heads() * 8);
                    float[] ref = ReferenceAttention.attend(G, h.manager.rope(), s.keys[1], s.values[1], q, start, 1, null,
                            (head, qp, kp) -> kp >= start || before.get(s.hashCode() + "/" + head / G.groupSize()).contains(kp));
                    float[] paged = java.util.Arrays.copyOfRange(r.paged()[1], r.firstRow()[i] * G.heads() * 8, (r.firstRow()[i] + 1) * G.heads() * 8);
                    assertThat(Harness.maxAbsDiff(paged, ref)).isLessThan(2e-5);
                    assertThat(s.cache.table(1, 0).liveTokens()).isEqualTo(10);
                }
            }
            assertThat(h.manager.stats().bytesUsed()).isLessThanOrEqualTo(a.cache.bytesHeld() + b.cache.bytesHeld());
        }
    }
}
