package dev.kvserve.kvcache;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kernels.RopeConfig;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Random interleavings of open / append / fork / prefix fork / close against the pool's invariants:
 * every block's reference count equals the tables that hold it, bytes used equal the bytes of the
 * distinct live blocks, nothing leaks when everything closes, fp32 contents survive copy-on-write.
 */
class BlockPoolPropertyTest {

    static final KvGeometry G = new KvGeometry(2, 4, 2, 8, 4096, new RopeConfig(8, 10000f, 1f, false));
    static final int BLOCK = 4;
    static final String[] POLICIES = {
            "fp32", "fp16", "int8", "int4:group=4", "int3:group=8", "kivi:bits=2,group=4,residual=8",
            "sink:sinks=2,window=9", "int4:group=8+sink:sinks=3,window=6", "kivi:bits=4,group=4,residual=4+sink:sinks=1,window=13",
    };

    static long[] seeds() {
        long[] s = new long[16];
        for (int i = 0; i < s.length; i++) s[i] = 1000 + i;
        if (System.getProperty("kvserve.seed") != null) return new long[] {Long.parseLong(System.getProperty("kvserve.seed"))};
        return s;
    }

    /** A sequence under test plus the keys/values it should hold (pre-RoPE, per position, all layers). */
    static final class Tracked {
        final PagedSequence seq;
        final List<float[]> keys = new ArrayList<>();
        final List<float[]> values = new ArrayList<>();
        /** A prefix fork of a sealing format may keep a partly dead sealed block at its end. */
        boolean prefixFork;

        Tracked(PagedSequence seq) {
            this.seq = seq;
        }
    }

    @ParameterizedTest
    @MethodSource("seeds")
    void randomInterleavingsKeepThePoolConsistent(long seed) {
        Random rnd = new Random(seed);
        long budget = 40_000 + rnd.nextInt(40_000);
        try (KvCacheManager m = new KvCacheManager(G, budget, BLOCK)) {
            List<Tracked> live = new ArrayList<>();
            int budgetHits = 0;
            for (int op = 0; op < 160; op++) {
                int kind = rnd.nextInt(10);
                if (live.isEmpty() || kind == 0) {
                    live.add(new Tracked(m.open(POLICIES[rnd.nextInt(POLICIES.length)])));
                } else if (kind <= 5) {
                    Tracked t = live.get(rnd.nextInt(live.size()));
                    try {
                        step(m, t, 1 + (rnd.nextBoolean() ? 0 : rnd.nextInt(12)), rnd);
                    } catch (KvBudgetExceededException e) {
                        budgetHits++;
                        t.seq.close();
                        live.remove(t);
                    }
                } else if (kind == 6) {
                    Tracked src = live.get(rnd.nextInt(live.size()));
                    Tracked f = new Tracked(m.fork(src.seq));
                    f.prefixFork = src.prefixFork;
                    f.keys.addAll(src.keys);
                    f.values.addAll(src.values);
                    live.add(f);
                } else if (kind == 7) {
                    Tracked src = live.get(rnd.nextInt(live.size()));
                    if (src.seq.policy().eviction().isPresent()) {
                        assertThatThrownBy(() -> m.fork(src.seq, 0)).isInstanceOf(IllegalArgumentException.class);
                        continue;
                    }
                    int prefix = rnd.nextInt(src.seq.length() + 1);
                    Tracked f;
                    try {
                        f = new Tracked(m.fork(src.seq, prefix));
                    } catch (KvBudgetExceededException e) {
                        budgetHits++;
                        continue;
                    }
                    f.keys.addAll(src.keys.subList(0, prefix));
                    f.values.addAll(src.values.subList(0, prefix));
                    f.prefixFork = true;
                    live.add(f);
                } else {
                    Tracked t = live.remove(rnd.nextInt(live.size()));
                    t.seq.close();
                    t.seq.close();
                    assertThat(t.seq.bytesHeld()).isZero();
                }
                checkInvariants(m, live, budget);
            }
            for (Tracked t : live) t.seq.close();
            KvPoolStats s = m.stats();
            assertThat(s.bytesUsed()).isZero();
            assertThat(s.blocksUsed()).isZero();
            assertThat(s.sequences()).isZero();
            assertThat(s.bytesByTier().getOrDefault("primary", 0L)).isZero();
            assertThat(budgetHits).isGreaterThanOrEqualTo(0);
        }
    }

    /** One step of {@code n} tokens through every layer's hooks, as the attention layer drives them. */
    static void step(KvCacheManager m, Tracked t, int n, Random rnd) {
        int kvDim = G.kvDim(), d = G.headDim();
        int start = t.seq.length();
        float[][] pre = new float[G.layers()][n * kvDim];
        float[][] vals = new float[G.layers()][n * kvDim];
        for (int l = 0; l < G.layers(); l++) {
            for (int i = 0; i < n * kvDim; i++) {
                pre[l][i] = (float) rnd.nextGaussian();
                vals[l][i] = (float) rnd.nextGaussian();
            }
        }
        for (int l = 0; l < G.layers(); l++) {
            float[] post = pre[l].clone();
            for (int r = 0; r < n; r++) for (int h = 0; h < G.kvHeads(); h++) m.rope().rotate(post, (r * G.kvHeads() + h) * d, start + r);
            t.seq.append(new KvRows(l, n, start, G.kvHeads(), d, pre[l], post, vals[l]));
            QueryRows q = new QueryRows(new float[n * G.heads() * d], n, start, G.heads(), d);
            assertThat(t.seq.beforeAttention(l, q)).isNull();
            t.seq.afterAttention(l, q, null, false);
        }
        t.seq.advance(n);
        for (int r = 0; r < n; r++) {
            float[] k = new float[G.layers() * kvDim];
            float[] v = new float[G.layers() * kvDim];
            for (int l = 0; l < G.layers(); l++) {
                System.arraycopy(pre[l], r * kvDim, k, l * kvDim, kvDim);
                System.arraycopy(vals[l], r * kvDim, v, l * kvDim, kvDim);
            }
            t.keys.add(k);
            t.values.add(v);
        }
    }

    static void checkInvariants(KvCacheManager m, List<Tracked> live, long budget) {
        Map<Block, Integer> refs = new IdentityHashMap<>();
        for (Tracked t : live) {
            PagedSequence s = t.seq;
            assertThat(s.length()).isEqualTo(t.keys.size());
            var sink = s.policy().eviction();
            int expectLive = sink.isPresent()
                    ? Math.min(s.length(), sink.get().params().getInt("sinks") + (int) ((dev.kvserve.kvcache.evict.Budget) sink.get().params().values().get("window")).value())
                    : s.length();
            for (int l = 0; l < G.layers(); l++) {
                for (int h = 0; h < G.kvHeads(); h++) {
                    BlockTable table = s.table(l, h);
                    int liveSum = 0;
                    Set<Integer> positions = new HashSet<>();
                    for (int b = 0; b < table.blockCount(); b++) {
                        Block block = table.block(b);
                        refs.merge(block, 1, Integer::sum);
                        int blockLive = 0;
                        for (int i = 0; i < block.used(); i++) {
                            int p = block.positions()[i];
                            if (p < 0) continue;
                            blockLive++;
                            if (!positions.add(p) || p >= s.length()) {
                                throw new AssertionError("position " + p + " held twice or beyond length " + s.length());
                            }
                        }
                        for (int i = block.used(); i < BLOCK; i++) assertThat(block.positions()[i]).isEqualTo(-1);
                        assertThat(block.live()).isEqualTo(blockLive).isPositive();
                        liveSum += blockLive;
                    }
                    assertThat(table.liveTokens()).isEqualTo(liveSum).isEqualTo(expectLive);
                    if (sink.isPresent()) {
                        int sinks = sink.get().params().getInt("sinks"), window = (int) ((dev.kvserve.kvcache.evict.Budget) sink.get().params().values().get("window")).value();
                        for (int p : positions) {
                            if (!(p < sinks || p >= s.length() - window)) throw new AssertionError("position " + p + " outside sinks/window");
                        }
                    }
                    checkContents(m, t, l, h);
                }
            }
            long held = s.bytesHeld();
            long bound = m.bytesFor(s.policy(), s.length());
            if (s.policy().eviction().isEmpty() && !s.policy().format().spec().startsWith("kivi")) {
                assertThat(held).as("bytes of %s at %d tokens", s.policy(), s.length()).isEqualTo(bound);
            } else {
                if (t.prefixFork) bound += (long) G.layers() * G.kvHeads() * 2 * BLOCK * G.headDim() * 2;
                assertThat(held).as("bytes of %s at %d tokens", s.policy(), s.length()).isLessThanOrEqualTo(bound);
            }
        }
        long bytes = 0;
        for (Map.Entry<Block, Integer> e : refs.entrySet()) {
            assertThat(e.getKey().refCount).as("reference count").isEqualTo(e.getValue());
            bytes += e.getKey().bytes();
        }
        KvPoolStats stats = m.stats();
        assertThat(stats.bytesUsed()).isEqualTo(bytes).isLessThanOrEqualTo(budget);
        assertThat(stats.blocksUsed()).isEqualTo(refs.size());
        assertThat(stats.sequences()).isEqualTo(live.size());
        assertThat(stats.bytesByTier().getOrDefault("primary", 0L)).isEqualTo(bytes);
        assertThat(stats.bytesReserved()).isGreaterThanOrEqualTo(bytes);
    }

    /** fp32 holds exactly what was appended, whatever was forked or copied on write. */
    static void checkContents(KvCacheManager m, Tracked t, int layer, int kvHead) {
        if (!t.seq.policy().format().spec().equals("fp32")) return;
        LayerKv kv = t.seq.layer(layer);
        int d = G.headDim(), kvDim = G.kvDim();
        float[] k = new float[d], v = new float[d], want = new float[d];
        for (int s = 0; s < kv.slots(kvHead); s++) {
            int p = kv.position(kvHead, s);
            if (p < 0) continue;
            kv.readKey(kvHead, s, k, 0);
            kv.readValue(kvHead, s, v, 0);
            System.arraycopy(t.keys.get(p), layer * kvDim + kvHead * d, want, 0, d);
            m.rope().rotate(want, 0, p);
            float[] wantV = java.util.Arrays.copyOfRange(t.values.get(p), layer * kvDim + kvHead * d, layer * kvDim + kvHead * d + d);
            // plain comparisons first: AssertJ per element is slow in this hot loop
            if (!java.util.Arrays.equals(k, want)) assertThat(k).as("key at %d", p).containsExactly(want);
            if (!java.util.Arrays.equals(v, wantV)) assertThat(v).as("value at %d", p).containsExactly(wantV);
        }
    }

    @Test
    void budgetIsExactAndExceedingItThrows() {
        // fp32 block of 4 tokens x head 8: 2 * 4 * 8 * 4 = 256 bytes; one token opens 4 blocks (2 layers x 2 heads)
        try (KvCacheManager m = new KvCacheManager(G, 4 * 256 * 2, BLOCK)) {
            KvCachePolicy fp32 = KvCachePolicy.parse("fp32");
            assertThat(m.bytesFor(fp32, 1)).isEqualTo(1024);
            assertThat(m.bytesFor(fp32, 8)).isEqualTo(2048);
            assertThat(m.bytesFor(fp32, 9)).isEqualTo(3072);
            assertThat(m.canAdmit(fp32, 8)).isTrue();
            assertThat(m.canAdmit(fp32, 9)).isFalse();
            PagedSequence s = m.open(fp32);
            Tracked t = new Tracked(s);
            step(m, t, 8, new Random(1));
            assertThat(s.bytesHeld()).isEqualTo(2048);
            assertThat(m.stats().bytesUsed()).isEqualTo(2048);
            assertThat(m.stats().bytesFree()).isZero();
            assertThat(m.canAdmit(fp32, 1)).isFalse();
            assertThatThrownBy(() -> step(m, t, 1, new Random(2)))
                    .isInstanceOf(KvBudgetExceededException.class)
                    .hasMessageContaining("need 256 bytes, 0 of 2048 free");
            s.close();
            assertThat(m.stats().bytesUsed()).isZero();
            assertThat(m.stats().blocksFree()).isPositive();
        }
    }

    @Test
    void forkSharesBlocksUntilTheFirstDivergentWrite() {
        try (KvCacheManager m = new KvCacheManager(G, 1 << 20, BLOCK)) {
            Tracked a = new Tracked(m.open("fp32"));
            step(m, a, 6, new Random(3));
            long used = m.stats().bytesUsed();
            Tracked b = new Tracked(m.fork(a.seq));
            b.keys.addAll(a.keys);
            b.values.addAll(a.values);
            assertThat(m.stats().bytesUsed()).isEqualTo(used);
            assertThat(b.seq.bytesShared()).isEqualTo(b.seq.bytesHeld()).isEqualTo(used);
            // the partially filled tail block (2 of 4 slots) is copied on b's first write, in each of 4 tables
            step(m, b, 1, new Random(4));
            assertThat(m.stats().bytesUsed()).isEqualTo(used + 4 * 256);
            assertThat(b.seq.bytesShared()).isEqualTo(4 * 256);
            checkInvariants(m, List.of(a, b), 1 << 20);
            Tracked c = new Tracked(m.fork(a.seq, 4));
            c.keys.addAll(a.keys.subList(0, 4));
            c.values.addAll(a.values.subList(0, 4));
            assertThat(m.stats().bytesUsed()).isEqualTo(used + 4 * 256);
            checkInvariants(m, List.of(a, b, c), 1 << 20);
            a.seq.close();
            b.seq.close();
            checkInvariants(m, List.of(c), 1 << 20);
            assertThat(m.stats().bytesUsed()).isEqualTo(4 * 256);
            c.seq.close();
            assertThat(m.stats().bytesUsed()).isZero();
        }
    }
}
