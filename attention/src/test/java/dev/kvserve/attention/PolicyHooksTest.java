package dev.kvserve.attention;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.BlockTable;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.QueryRows;
import dev.kvserve.kvcache.evict.AttentionWeights;
import dev.kvserve.kvcache.evict.EvictionPolicy;
import dev.kvserve.kvcache.evict.EvictionState;
import dev.kvserve.kvcache.policy.ComponentKind;
import dev.kvserve.kvcache.policy.MethodDef;
import dev.kvserve.kvcache.policy.ParamSpec;
import dev.kvserve.kvcache.policy.Params;
import dev.kvserve.kvcache.policy.PolicyRegistry;
import dev.kvserve.kvcache.select.Selection;
import dev.kvserve.kvcache.select.SelectorState;
import dev.kvserve.kvcache.select.TokenSelector;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Policy parts registered from outside the kvcache module (as later methods will be) driving the
 * sparse path and the attention-weight sums, and the StreamingLLM sink policy end to end.
 */
class PolicyHooksTest {

    static final KvGeometry G = new KvGeometry(2, 4, 2, 8, 4096, new RopeConfig(8, 10000f, 1f, true));

    /** Last selection per (layer, query head): positions chosen, for the reference. */
    static final Map<String, Set<Integer>> CHOSEN = new HashMap<>();
    /** Last attention weights per layer and the step's query rows. */
    static final Map<Integer, AttentionWeights> WEIGHTS = new HashMap<>();
    static final Map<Integer, List<int[]>> WEIGHT_POSITIONS = new HashMap<>();

    static {
        if (PolicyRegistry.all().stream().noneMatch(d -> d.name().equals("testpick"))) {
            PolicyRegistry.register(new MethodDef("testpick", ComponentKind.SELECTION, "random subset (test)",
                    List.of(ParamSpec.ofDouble("keep", 0.5, 0, 1), ParamSpec.ofBoolean("shared", false)), RandomPick::new));
            PolicyRegistry.register(new MethodDef("testpre", ComponentKind.FORMAT, "fp32 keys stored before RoPE (test)",
                    List.of(), PreRopeFp32::new));
            PolicyRegistry.register(new MethodDef("testweights", ComponentKind.EVICTION, "records attention weights (test)",
                    List.of(ParamSpec.ofInt("from", 0, 0, Integer.MAX_VALUE)), WeightRecorder::new));
        }
    }

    record RandomPick(Params params) implements TokenSelector {
        @Override
        public SelectorState open(KvGeometry geometry, int blockTokens) {
            double keep = params.getDouble("keep");
            boolean shared = params.getBoolean("shared");
            Random rnd = new Random(99);
            return new SelectorState() {
                @Override
                public Selection select(LayerKv kv, QueryRows queries) {
                    int g = kv.geometry().groupSize();
                    int heads = kv.geometry().heads();
                    int[][] perHead = new int[shared ? kv.geometry().kvHeads() : heads][];
                    for (int i = 0; i < perHead.length; i++) {
                        int kvHead = shared ? i : i / g;
                        List<Integer> slots = new ArrayList<>();
                        for (int s = 0; s < kv.slots(kvHead); s++) if (rnd.nextDouble() < keep) slots.add(s);
                        perHead[i] = slots.stream().mapToInt(Integer::intValue).toArray();
                        Set<Integer> positions = new HashSet<>();
                        for (int s : perHead[i]) if (kv.isLive(kvHead, s)) positions.add(kv.position(kvHead, s));
                        if (shared) {
                            for (int j = 0; j < g; j++) CHOSEN.put(kv.layer() + "/" + (i * g + j), positions);
                        } else {
                            CHOSEN.put(kv.layer() + "/" + i, positions);
                        }
                    }
                    return shared ? Selection.perKvHead(perHead, g) : Selection.perQueryHead(perHead);
                }

                @Override
                public SelectorState fork() {
                    return this;
                }
            };
        }
    }

    /** fp32 with keys stored before RoPE: attention rotates them on read (the KVQuant / AQUA-KV path). */
    record PreRopeFp32(Params params) implements dev.kvserve.kvcache.format.KvStorageFormat {
        @Override
        public dev.kvserve.kvcache.format.FormatBinding bind(KvGeometry geometry, int blockTokens) {
            var codec = new dev.kvserve.kvcache.format.FullPrecisionFormat.Fp32Codec(geometry.headDim(), blockTokens,
                    dev.kvserve.kvcache.format.KeyFrame.PRE_ROPE);
            return new dev.kvserve.kvcache.format.FormatBinding() {
                public KvGeometry geometry() { return geometry; }
                public int blockTokens() { return blockTokens; }
                public dev.kvserve.kvcache.format.BlockCodec appendCodec(int layer, int firstPosition) { return codec; }
            };
        }
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {"testpre | 4", "testpre+sink:sinks=3,window=7 | 4", "testpre+testpick:keep=0.5,shared=true | 16"})
    void keysStoredBeforeRopeAreRotatedOnRead(String spec, int blockTokens) {
        try (Harness h = new Harness(G, 16 << 20, blockTokens, 2, 17)) {
            Harness.Seq s = h.open(spec);
            for (int step = 0; step < 12; step++) {
                Harness.StepResult r = h.stepPerLayer(List.of(s), new int[] {step == 0 ? 19 : 1}, null,
                        layer -> spec.contains("testpick") ? (head, qp, kp) -> CHOSEN.get(layer + "/" + head).contains(kp) : null);
                for (int l = 0; l < G.layers(); l++) {
                    assertThat(Harness.maxAbsDiff(r.paged()[l], r.reference()[l])).as("step %d layer %d", step, l).isLessThan(2e-5);
                }
            }
            // hooks see keys in both frames
            LayerKv kv = s.cache.layer(1);
            float[] post = new float[G.headDim()], pre = new float[G.headDim()];
            int slot = kv.slots(0) - 1, p = kv.position(0, slot);
            kv.readKey(0, slot, post, 0);
            kv.readKeyPreRope(0, slot, pre, 0);
            for (int c = 0; c < G.headDim(); c++) assertThat(pre[c]).isEqualTo(s.keys[1][p * G.kvDim() + c]);
            h.manager.rope().rotate(pre, 0, p);
            assertThat(pre).containsExactly(post);
        }
    }

    record WeightRecorder(Params params) implements EvictionPolicy {
        @Override
        public EvictionState open(KvGeometry geometry, int blockTokens) {
            int from = params.getInt("from");
            return new EvictionState() {
                @Override
                public int attentionWeightsFrom(int layer, int stepStart, int stepTokens, boolean endsPrompt) {
                    return from;
                }

                @Override
                public void afterAttention(LayerKv kv, QueryRows queries, AttentionWeights weights) {
                    WEIGHTS.put(kv.layer(), weights);
                    List<int[]> pos = new ArrayList<>();
                    for (int h = 0; h < kv.geometry().kvHeads(); h++) {
                        int[] p = new int[kv.slots(h)];
                        for (int s = 0; s < p.length; s++) p[s] = kv.position(h, s);
                        pos.add(p);
                    }
                    WEIGHT_POSITIONS.put(kv.layer(), pos);
                }

                @Override
                public EvictionState fork() {
                    return this;
                }
            };
        }

        @Override
        public int maxRetainedTokens(int layer, int tokens, int stepTokens) {
            return tokens + stepTokens;
        }
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {"fp32+testpick:keep=0.5,shared=false | 16 | 0",
            "fp32+testpick:keep=0.3,shared=true | 4 | 0", "fp32+testpick:keep=0.9,shared=false | 4 | 0",
            "int4:group=4+testpick:keep=0.6,shared=true | 4 | 0.2"})
    void sparsePathEqualsDenseAttentionRestrictedToTheChosenSet(String spec, int blockTokens, double relativeBound) {
        try (Harness h = new Harness(G, 16 << 20, blockTokens, 2, 7)) {
            Harness.Seq s = h.open(spec);
            for (int step = 0; step < 8; step++) {
                int n = step == 0 ? 23 : 1;
                Harness.StepResult r = h.stepPerLayer(List.of(s), new int[] {n}, null,
                        layer -> (head, qp, kp) -> CHOSEN.get(layer + "/" + head).contains(kp));
                for (int l = 0; l < G.layers(); l++) {
                    if (relativeBound == 0) {
                        assertThat(Harness.maxAbsDiff(r.paged()[l], r.reference()[l])).as("layer %d step %d", l, step).isLessThan(2e-5);
                    } else {
                        assertThat(Harness.relativeError(r.paged()[l], r.reference()[l])).isLessThan(relativeBound);
                    }
                }
            }
        }
    }

    /**
     * Steps of more than {@link PagedAttention#ROW_TILE} rows run their row tiles of one KV head on
     * different threads; every tile's weights must arrive (a shared sum array lost updates once).
     */
    @ParameterizedTest
    @CsvSource({"20, 14, 8", "64, 0, 1", "64, 30, 2", "50, 0, 3", "33, 16, 4"})
    void attentionWeightSumsMatchSoftmaxProbabilities(int tokens, int from, long seed) {
        try (Harness h = new Harness(G, 16 << 20, 4, 2, seed)) {
            Harness.Seq s = h.open("fp32+testweights:from=" + from);
            Harness.StepResult r = h.step(s, tokens);
            int start = r.starts()[0];
            int counted = tokens - from;
            for (int l = 0; l < G.layers(); l++) {
                AttentionWeights w = WEIGHTS.get(l);
                assertThat(w.queries()).isEqualTo(counted);
                float[] q = r.q()[l];
                double[][] expected = new double[G.heads()][tokens];
                for (int row = from; row < tokens; row++) {
                    for (int head = 0; head < G.heads(); head++) {
                        double[] p = ReferenceAttention.probabilities(G, h.manager.rope(), s.keys[l], q, row, start, head);
                        for (int t = 0; t < p.length; t++) expected[head][t] += p[t];
                    }
                }
                for (int kvHead = 0; kvHead < G.kvHeads(); kvHead++) {
                    int[] positions = WEIGHT_POSITIONS.get(l).get(kvHead);
                    double total = 0;
                    for (int slot = 0; slot < positions.length; slot++) {
                        for (int g = 0; g < G.groupSize(); g++) {
                            double want = expected[kvHead * G.groupSize() + g][positions[slot]];
                            assertThat((double) w.get(kvHead, g, slot)).isCloseTo(want, org.assertj.core.data.Offset.offset(1e-5));
                            total += w.get(kvHead, g, slot);
                        }
                        assertThat(w.reduce(kvHead, slot, AttentionWeights.Reduction.SUM))
                                .isCloseTo(w.get(kvHead, 0, slot) + w.get(kvHead, 1, slot), org.assertj.core.data.Offset.offset(1e-6f));
                    }
                    assertThat(total).isCloseTo((double) counted * G.groupSize(), org.assertj.core.data.Offset.offset(1e-4 * counted));
                }
            }
        }
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {"fp32+sink:sinks=4,window=12 | 4 | 1e-5", "fp32+sink:sinks=2,window=5 | 16 | 1e-5",
            "fp32+sink:sinks=0,window=7 | 4 | 1e-5", "int8+sink:sinks=4,window=12 | 4 | 2e-2",
            "kivi:bits=4,group=4,residual=4+sink:sinks=4,window=12 | 4 | 0.15", "fp32+sink:sinks=2,window=0.3 | 4 | 1e-5"})
    void sinkPolicyKeepsExactlySinksPlusWindowAndFreesBlocks(String spec, int blockTokens, double tolerance) {
        try (Harness h = new Harness(G, 16 << 20, blockTokens, 2, 9)) {
            Harness.Seq s = h.open(spec);
            var ev = s.cache.policy().eviction().orElseThrow();
            int sinks = ev.params().getInt("sinks");
            var recent = (dev.kvserve.kvcache.evict.Budget) ev.params().values().get("window");
            long maxBytes = 0;
            for (int step = 0; step < 40; step++) {
                int n = step == 0 ? 30 : step == 10 ? 9 : 1;
                Harness.StepResult r = h.step(s, n);
                for (int l = 0; l < G.layers(); l++) {
                    double err = tolerance < 1e-3 ? Harness.maxAbsDiff(r.paged()[l], r.reference()[l])
                            : Harness.relativeError(r.paged()[l], r.reference()[l]);
                    assertThat(err).as("step %d layer %d", step, l).isLessThan(tolerance);
                    for (int kvHead = 0; kvHead < G.kvHeads(); kvHead++) {
                        BlockTable t = s.cache.table(l, kvHead);
                        int len = s.cache.length(), window = recent.tokensFor(len);
                        assertThat(t.liveTokens()).isEqualTo(Math.min(len, sinks + window));
                        LayerKv kv = s.cache.layer(l);
                        for (int slot = 0; slot < kv.slots(kvHead); slot++) {
                            int p = kv.position(kvHead, slot);
                            if (p >= 0) assertThat(p < sinks || p >= len - window).isTrue();
                        }
                        if (spec.startsWith("fp32") || spec.startsWith("int8")) {
                            assertThat(t.blockCount()).isLessThanOrEqualTo((sinks + window + blockTokens - 1) / blockTokens + 1);
                        }
                    }
                }
                maxBytes = Math.max(maxBytes, s.cache.bytesHeld());
                assertThat(s.cache.bytesHeld()).isLessThanOrEqualTo(h.manager.bytesFor(s.cache.policy(), s.cache.length()));
            }
            // 70 tokens went through a cache that never held more than its bound: blocks were returned
            long unbounded = h.manager.bytesFor(dev.kvserve.kvcache.KvCachePolicy.parse(s.cache.policy().format().spec()), s.cache.length());
            assertThat(maxBytes).isLessThan(unbounded);
            assertThat(h.manager.stats().bytesUsed()).isEqualTo(s.cache.bytesHeld());
        }
    }
}
