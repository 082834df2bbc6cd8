package dev.kvserve.kvcache.select;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.ArrayLayerKv;
import dev.kvserve.kvcache.Feed;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.QueryRows;
import java.util.Random;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Quest and ClusterKV on constructed caches whose right selection is known. RoPE is off so q·k is what the test writes. */
class SelectorsTest {

    static final int D = 8;
    static final KvGeometry G = new KvGeometry(1, 2, 1, D, 4096, new RopeConfig(0, 10000f, 1f, true));

    static float[] gaussian(Random rnd, int n, double scale) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) (rnd.nextGaussian() * scale);
        return x;
    }

    // ------------------------------------------------------------------ Quest

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3})
    void questBoundIsNeverBelowTheTrueMaximumScoreOfAPage(int seed) {
        Random rnd = new Random(seed);
        KvGeometry g = new KvGeometry(1, 4, 2, D, 4096, new RopeConfig(0, 10000f, 1f, true));
        QuestSelector quest = (QuestSelector) KvCachePolicy.parse("fp32+quest:budget=8,page=4,skip=none").selector().orElseThrow();
        QuestSelector.State state = (QuestSelector.State) quest.open(g, 4);
        ArrayLayerKv kv = new ArrayLayerKv(0, g, quest.lanes());
        int pos = 0;
        for (int step = 0; step < 12; step++) {
            int n = 1 + rnd.nextInt(5);
            float[] keys = gaussian(rnd, n * g.kvDim(), 1 + rnd.nextInt(3));
            KvRows rows = new KvRows(0, n, pos, g.kvHeads(), D, keys, keys, gaussian(rnd, n * g.kvDim(), 1));
            kv.store(rows);
            state.onAppend(kv, rows);
            pos += n;
            if (step == 6) {
                // imitate eviction + compaction: drop two tokens, move the newest token into a hole
                kv.evict(0, 1);
                kv.evict(1, 5);
                kv.move(0, kv.slots(0) - 1, 1);
            }
            state.select(kv, new QueryRows(gaussian(rnd, g.heads() * D, 1), 1, pos - 1, g.heads(), D));
            for (int trial = 0; trial < 20; trial++) {
                float[] q = gaussian(rnd, D, 2);
                for (int h = 0; h < g.kvHeads(); h++) {
                    for (int p = 0; p * 4 < kv.slots(h); p++) {
                        double trueMax = Double.NEGATIVE_INFINITY;
                        float[] k = new float[D];
                        for (int s = p * 4; s < Math.min(kv.slots(h), p * 4 + 4); s++) {
                            if (!kv.isLive(h, s)) continue;
                            kv.readKey(h, s, k, 0);
                            double dot = 0;
                            for (int c = 0; c < D; c++) dot += q[c] * k[c];
                            trueMax = Math.max(trueMax, dot);
                        }
                        if (trueMax == Double.NEGATIVE_INFINITY) continue;
                        float[] b = state.bounds(0, h, p);
                        double u = QuestSelector.criticality(q, 0, b, java.util.Arrays.copyOfRange(b, D, 2 * D), 0, D);
                        assertThat(u).as("step %d head %d page %d", step, h, p).isGreaterThanOrEqualTo(trueMax - 1e-4);
                    }
                }
            }
        }
    }

    @Test
    void questReadsThePageOfTheMatchingKeyAndTheNewestPage() {
        Random rnd = new Random(4);
        try (Feed f = new Feed(G, "fp32+quest:budget=8,page=4,skip=none", 4)) {
            int prompt = 32;
            float[] keys = gaussian(rnd, prompt * D, 0.3);
            keys[9 * D + 2] = 5;
            assertThat(f.step(gaussian(rnd, prompt * 2 * D, 1), keys, gaussian(rnd, prompt * D, 1), prompt, true))
                    .as("prompt steps attend densely").isNull();
            float[] q = new float[2 * D];
            q[2] = 1;
            q[D + 2] = 1;
            f.step(q, gaussian(rnd, D, 0.3), gaussian(rnd, D, 1), 1, false);
            TreeSet<Integer> expected = new TreeSet<>(java.util.List.of(8, 9, 10, 11, 32));
            assertThat(f.selected(0, 0)).isEqualTo(expected);
            assertThat(f.selected(0, 1)).isEqualTo(expected);
            assertThat(f.live(0, 0)).as("nothing is evicted").hasSize(33);
        }
    }

    // ------------------------------------------------------------------ ClusterKV

    /** Prompt: 2 sinks, then 32 keys in 4 directions (position p has direction p % 4), interleaved. */
    static float[] clusteredPrompt(Random rnd) {
        float[] keys = gaussian(rnd, 34 * D, 0.05);
        for (int p = 2; p < 34; p++) keys[p * D + (p % 4)] += 2;
        return keys;
    }

    static float[] queryAlong(int axis) {
        float[] q = new float[2 * D];
        q[axis] = 1;
        q[D + axis] = 1;
        return q;
    }

    @Test
    void clusterKvRecallsTheClusterOfTheMatchingKeyAndCanRecallAnotherLater() {
        Random rnd = new Random(5);
        try (Feed f = new Feed(G, "fp32+clusterkv:budget=12,sinks=2,clusters=4,iterations=10,window=4,window_clusters=1,skip=none", 4)) {
            f.step(gaussian(rnd, 34 * 2 * D, 1), clusteredPrompt(rnd), gaussian(rnd, 34 * D, 1), 34, true);
            for (int axis : new int[] {3, 0, 2}) {
                f.step(queryAlong(axis), gaussian(rnd, D, 0.05), gaussian(rnd, D, 1), 1, false);
                int now = f.seq.length() - 1;
                TreeSet<Integer> sel = f.selected(0, 0);
                for (int p = 2; p < 34; p++) if (p % 4 == axis) assertThat(sel).as("query along %d", axis).contains(p);
                assertThat(sel).contains(0, 1, now);
                // sinks + exactly budget - sinks recalled tokens + the unclustered generated ones
                assertThat(sel).hasSize(2 + 10 + (now - 34 + 1));
                assertThat(f.selected(0, 1)).isEqualTo(sel);
            }
            assertThat(f.live(0, 0)).as("nothing is evicted").hasSize(37);
        }
    }

    @Test
    void clusterKvClustersGeneratedTokensOnceAWindowHasGathered() {
        Random rnd = new Random(6);
        try (Feed f = new Feed(G, "fp32+clusterkv:budget=12,sinks=2,clusters=4,iterations=10,window=4,window_clusters=1,skip=none,gqa=avg", 4)) {
            f.step(gaussian(rnd, 34 * 2 * D, 1), clusteredPrompt(rnd), gaussian(rnd, 34 * D, 1), 34, true);
            int[] sizes = new int[8];
            for (int step = 0; step < 8; step++) {
                // generated keys along direction 1, queries along direction 3: they are recalled only while unclustered
                float[] k = new float[D];
                k[1] = 2;
                Selection sel = f.step(queryAlong(3), k, gaussian(rnd, D, 1), 1, false);
                assertThat(sel.shared(0, 2)).as("gqa=avg shares one set per KV head").isTrue();
                sizes[step] = f.selected(0, 0).size();
            }
            // tokens 34..37 wait unclustered (always read); the step at 38 clusters them into one cluster that is not recalled
            assertThat(sizes).containsExactly(2 + 10 + 1, 2 + 10 + 2, 2 + 10 + 3, 2 + 10 + 4, 2 + 10 + 1, 2 + 10 + 2, 2 + 10 + 3, 2 + 10 + 4);
        }
    }

    @Test
    void cosineKMeansSeparatesDirectionsRegardlessOfLength() {
        Random rnd = new Random(7);
        int n = 60;
        float[] x = new float[n * D];
        for (int i = 0; i < n; i++) {
            double len = 0.5 + 5 * rnd.nextDouble();
            for (int c = 0; c < D; c++) x[i * D + c] = (float) (rnd.nextGaussian() * 0.02 + (c == i % 3 ? len : 0));
        }
        CosineKMeans.Result r = CosineKMeans.fit(x, n, D, 3, 20, new Random(1));
        for (int i = 3; i < n; i++) assertThat(r.labels()[i]).isEqualTo(r.labels()[i % 3]);
        assertThat(new TreeSet<>(java.util.List.of(r.labels()[0], r.labels()[1], r.labels()[2]))).hasSize(3);
        // centroids are the plain means of their members
        for (int j = 0; j < 3; j++) {
            double sum = 0;
            int cnt = 0;
            for (int i = 0; i < n; i++) {
                if (r.labels()[i] != j) continue;
                sum += x[i * D];
                cnt++;
            }
            assertThat((double) r.centroids()[j * D]).isCloseTo(sum / cnt, org.assertj.core.data.Offset.offset(1e-4));
        }
    }
}
