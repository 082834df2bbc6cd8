package dev.kvserve.kvcache;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.evict.AttentionWeights;
import dev.kvserve.kvcache.evict.EvictionPolicy;
import dev.kvserve.kvcache.evict.EvictionState;
import dev.kvserve.kvcache.format.FormatBinding;
import dev.kvserve.kvcache.format.FormatState;
import dev.kvserve.kvcache.format.KvStorageFormat;
import dev.kvserve.kvcache.format.SideMemory;
import dev.kvserve.kvcache.policy.ComponentKind;
import dev.kvserve.kvcache.policy.MethodDef;
import dev.kvserve.kvcache.policy.ParamSpec;
import dev.kvserve.kvcache.policy.Params;
import dev.kvserve.kvcache.policy.PolicyRegistry;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

/**
 * The contract later methods build on: lanes follow their tokens through eviction and compaction,
 * rewrite replaces one slot (per-token and whole-block formats), side memory is budgeted and freed.
 */
class HookContractTest {

    static final KvGeometry G = new KvGeometry(2, 4, 2, 8, 4096, new RopeConfig(8, 10000f, 1f, false));

    static {
        if (PolicyRegistry.all().stream().noneMatch(d -> d.name().equals("testdrop"))) {
            PolicyRegistry.register(new MethodDef("testdrop", ComponentKind.EVICTION, "random per-head eviction (test)",
                    List.of(ParamSpec.ofDouble("p", 0.3, 0, 1)), RandomDrop::new));
            PolicyRegistry.register(new MethodDef("testside", ComponentKind.FORMAT, "fp32 with side memory (test)",
                    List.of(ParamSpec.ofInt("bytes", 100, 1, 1 << 20)), SideFormat::new));
        }
    }

    /** Stores each token's position in lane 0 and its kv head in int lane 0, drops random tokens. */
    record RandomDrop(Params params) implements EvictionPolicy {
        @Override
        public EvictionState open(KvGeometry geometry, int blockTokens) {
            Random rnd = new Random(5);
            double p = params.getDouble("p");
            return new EvictionState() {
                @Override
                public void onAppend(LayerKv kv, KvRows rows) {
                    for (int h = 0; h < kv.geometry().kvHeads(); h++) {
                        for (int s = kv.slots(h) - rows.rows(); s < kv.slots(h); s++) {
                            kv.setSlotFloat(h, s, 0, kv.position(h, s));
                            kv.setSlotInt(h, s, 0, 1000 * h + kv.position(h, s));
                        }
                    }
                }

                @Override
                public void afterAttention(LayerKv kv, QueryRows queries, AttentionWeights weights) {
                    for (int h = 0; h < kv.geometry().kvHeads(); h++) {
                        for (int s = 0; s < kv.slots(h); s++) {
                            if (kv.isLive(h, s) && kv.position(h, s) < queries.firstPosition() && rnd.nextDouble() < p) kv.evict(h, s);
                        }
                    }
                }

                @Override
                public EvictionState fork() {
                    return this;
                }
            };
        }

        @Override
        public dev.kvserve.kvcache.Lanes lanes() {
            return new dev.kvserve.kvcache.Lanes(1, 1);
        }

        @Override
        public int maxRetainedTokens(int layer, int tokens, int stepTokens) {
            return tokens + stepTokens;
        }
    }

    record SideFormat(Params params) implements KvStorageFormat {
        @Override
        public FormatBinding bind(KvGeometry geometry, int blockTokens) {
            FormatBinding fp32 = KvCachePolicy.parse("fp32").format().bind(geometry, blockTokens);
            int bytes = params.getInt("bytes");
            return new FormatBinding() {
                @Override
                public KvGeometry geometry() {
                    return geometry;
                }

                @Override
                public int blockTokens() {
                    return blockTokens;
                }

                @Override
                public dev.kvserve.kvcache.format.BlockCodec appendCodec(int layer, int firstPosition) {
                    return fp32.appendCodec(layer, firstPosition);
                }

                @Override
                public FormatState openSequence(SideMemory side) {
                    return new Held(side, side.allocate(bytes));
                }
            };
        }

        record Held(SideMemory side, MemorySegment seg) implements FormatState {
            @Override
            public FormatState fork(SideMemory into) {
                MemorySegment copy = into.allocate(seg.byteSize());
                copy.copyFrom(seg);
                return new Held(into, copy);
            }
        }
    }

    private static void step(KvCacheManager m, PagedSequence s, int n, Random rnd) {
        int kvDim = G.kvDim(), d = G.headDim(), start = s.length();
        for (int l = 0; l < G.layers(); l++) {
            float[] pre = new float[n * kvDim], vals = new float[n * kvDim];
            for (int i = 0; i < pre.length; i++) {
                pre[i] = (float) rnd.nextGaussian();
                vals[i] = (float) rnd.nextGaussian();
            }
            float[] post = pre.clone();
            for (int r = 0; r < n; r++) for (int h = 0; h < G.kvHeads(); h++) m.rope().rotate(post, (r * G.kvHeads() + h) * d, start + r);
            s.append(new KvRows(l, n, start, G.kvHeads(), d, pre, post, vals));
            QueryRows q = new QueryRows(new float[n * G.heads() * d], n, start, G.heads(), d);
            s.beforeAttention(l, q);
            s.afterAttention(l, q, null, false);
        }
        s.advance(n);
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {"fp32+testdrop:p=0.3 | 4", "int4:group=4+testdrop:p=0.5 | 16",
            "kivi:bits=2,group=4,residual=4+testdrop:p=0.2 | 4"})
    void lanesFollowTheirTokensThroughCompaction(String spec, int blockTokens) {
        Random rnd = new Random(3);
        try (KvCacheManager m = new KvCacheManager(G, 16 << 20, blockTokens)) {
            PagedSequence s = m.open(spec);
            for (int i = 0; i < 30; i++) {
                step(m, s, i == 0 ? 20 : 1 + rnd.nextInt(3), rnd);
                PagedSequence f = i == 10 ? m.fork(s) : null;
                for (PagedSequence seq : f == null ? List.of(s) : List.of(s, f)) {
                    for (int l = 0; l < G.layers(); l++) {
                        // lanes are private to the component: read them through a view with the same lanes
                        LayerKv kv = seq.layer(l);
                        for (int h = 0; h < G.kvHeads(); h++) {
                            int live = 0;
                            for (int slot = 0; slot < kv.slots(h); slot++) if (kv.isLive(h, slot)) live++;
                            assertThat(live).isEqualTo(kv.liveTokens(h));
                        }
                    }
                }
                if (f != null) f.close();
            }
            // the eviction rule's own view: check lanes through a hook
            int[] checked = new int[1];
            LaneCheck.check(s, checked);
            assertThat(checked[0]).isPositive();
            assertThat(s.liveTokens()).isLessThan((long) s.length() * G.layers() * G.kvHeads());
        }
    }

    /** Reads lanes back through the sequence's eviction view by running one more hook. */
    static final class LaneCheck {
        static void check(PagedSequence s, int[] checked) {
            for (int l = 0; l < G.layers(); l++) {
                BlockTable[] tables = new BlockTable[G.kvHeads()];
                for (int h = 0; h < G.kvHeads(); h++) tables[h] = s.table(l, h);
                for (int h = 0; h < G.kvHeads(); h++) {
                    BlockTable t = tables[h];
                    for (int slot = 0; slot < t.slots(); slot++) {
                        int p = t.position(slot);
                        if (p < 0) continue;
                        assertThat(t.floats[slot * t.floatLanes]).isEqualTo((float) p);
                        assertThat(t.ints[slot * t.intLanes]).isEqualTo(1000 * h + p);
                        checked[0]++;
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {"fp32 | 0", "int8 | 0.02", "kivi:bits=4,group=4,residual=0 | 0.3"})
    void rewriteReplacesOneSlot(String spec, double tolerance) {
        Random rnd = new Random(4);
        try (KvCacheManager m = new KvCacheManager(G, 16 << 20, 4)) {
            PagedSequence s = m.open(spec);
            step(m, s, 12, rnd);
            PagedSequence twin = m.fork(s);
            LayerKv kv = s.layer(1);
            int d = G.headDim();
            float[] key = new float[d], value = new float[d], before = new float[d], other = new float[d], otherAfter = new float[d];
            for (int c = 0; c < d; c++) {
                key[c] = (float) rnd.nextGaussian();
                value[c] = (float) rnd.nextGaussian();
            }
            kv.readKey(1, 5, before, 0);
            kv.readValue(1, 6, other, 0);
            kv.rewrite(1, 5, key, 0, value, 0);
            float[] k = new float[d], v = new float[d];
            kv.readKey(1, 5, k, 0);
            kv.readValue(1, 5, v, 0);
            kv.readValue(1, 6, otherAfter, 0);
            for (int c = 0; c < d; c++) {
                assertThat(k[c]).isCloseTo(key[c], within((float) tolerance + 1e-6f));
                assertThat(v[c]).isCloseTo(value[c], within((float) tolerance + 1e-6f));
                assertThat(otherAfter[c]).isCloseTo(other[c], within((float) (2 * tolerance) + 1e-6f));
            }
            // the fork still sees the old token: the shared block was copied before the rewrite
            float[] twinKey = new float[d];
            twin.layer(1).readKey(1, 5, twinKey, 0);
            assertThat(twinKey).containsExactly(before);
        }
    }

    @Test
    void sideMemoryIsBudgetedForkedAndFreed() {
        try (KvCacheManager m = new KvCacheManager(G, 1 << 20, 4)) {
            PagedSequence s = m.open("testside:bytes=300");
            assertThat(m.stats().sideBytes()).isEqualTo(300);
            assertThat(s.bytesHeld()).isEqualTo(300);
            step(m, s, 5, new Random(1));
            assertThat(s.bytesHeld()).isEqualTo(300 + 2L * G.layers() * G.kvHeads() * 256);
            PagedSequence f = m.fork(s);
            assertThat(m.stats().sideBytes()).isEqualTo(600);
            assertThat(m.stats().bytesUsed()).isEqualTo(600 + 2L * G.layers() * G.kvHeads() * 256);
            s.close();
            f.close();
            assertThat(m.stats().sideBytes()).isZero();
            assertThat(m.stats().bytesUsed()).isZero();
        }
    }
}
