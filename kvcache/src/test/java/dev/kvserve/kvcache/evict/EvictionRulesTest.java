package dev.kvserve.kvcache.evict;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.Feed;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.KvPoolStats;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The eviction rules of the papers on constructed inputs whose right decision is known. RoPE is off
 * (0 rotary dims) so that q·k is what the test writes; the composition with RoPE, quantized formats
 * and the attention kernel is covered in the attention module.
 */
class EvictionRulesTest {

    static final RopeConfig NO_ROPE = new RopeConfig(0, 10000f, 1f, true);
    static final int D = 8;

    static KvGeometry geometry(int layers, int heads, int kvHeads) {
        return new KvGeometry(layers, heads, kvHeads, D, 4096, NO_ROPE);
    }

    static float[] gaussian(Random rnd, int n, double scale) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) (rnd.nextGaussian() * scale);
        return x;
    }

    static float[] unit(int axis) {
        float[] u = new float[D];
        u[axis] = 1f;
        return u;
    }

    // ------------------------------------------------------------------ L2 norm

    @Test
    void l2KeepsTheLowestNormKeysPerHeadAndProtectsSinksAndWindow() {
        KvGeometry g = geometry(2, 4, 2);
        Random rnd = new Random(1);
        try (Feed f = new Feed(g, "fp32+l2:budget=6,sinks=1,window=2,skip=0", 4)) {
            List<float[]> norms = new ArrayList<>();
            int prompt = 20;
            float[] keys = new float[prompt * g.kvDim()];
            for (int t = 0; t < prompt; t++) norms.add(fillKey(rnd, keys, t, g));
            f.step(gaussian(rnd, prompt * g.heads() * D, 1), keys, gaussian(rnd, prompt * g.kvDim(), 1), prompt, true);
            for (int step = 0; step < 12; step++) {
                int len = f.seq.length();
                float[] k = new float[g.kvDim()];
                norms.add(fillKey(rnd, k, 0, g));
                f.step(gaussian(rnd, g.heads() * D, 1), k, gaussian(rnd, g.kvDim(), 1), 1, false);
                len++;
                for (int h = 0; h < g.kvHeads(); h++) {
                    TreeSet<Integer> expected = new TreeSet<>(List.of(0, len - 2, len - 1));
                    int head = h;
                    List<Integer> middle = new ArrayList<>();
                    for (int p = 1; p < len - 2; p++) middle.add(p);
                    middle.sort((a, b) -> Float.compare(norms.get(a)[head], norms.get(b)[head]));
                    expected.addAll(middle.subList(0, 3));
                    assertThat(f.live(1, h)).as("layer 1 head %d after %d tokens", h, len).isEqualTo(expected);
                    assertThat(f.live(0, h)).as("skipped layer keeps everything").hasSize(len);
                    assertThat(f.seq.table(1, h).blockCount()).isLessThanOrEqualTo(3);
                }
            }
            assertThat(f.live(1, 0)).isNotEqualTo(f.live(1, 1));
        }
    }

    /** A key of random direction with a distinct random norm per head; returns the norms. */
    static float[] fillKey(Random rnd, float[] keys, int row, KvGeometry g) {
        float[] norms = new float[g.kvHeads()];
        for (int h = 0; h < g.kvHeads(); h++) {
            float[] dir = gaussian(rnd, D, 1);
            double len = 0;
            for (float x : dir) len += x * x;
            norms[h] = (float) (0.1 + 10 * rnd.nextDouble());
            for (int c = 0; c < D; c++) keys[(row * g.kvHeads() + h) * D + c] = (float) (dir[c] / Math.sqrt(len) * norms[h]);
        }
        return norms;
    }

    // ------------------------------------------------------------------ H2O

    @Test
    void h2oKeepsTheHeavyHitterTheQueriesAttendToAndTheRecentWindow() {
        KvGeometry g = geometry(1, 2, 1);
        Random rnd = new Random(2);
        float[] u = unit(3);
        try (Feed f = new Feed(g, "fp32+h2o:budget=5,window=2", 4)) {
            int prompt = 12;
            float[] keys = gaussian(rnd, prompt * D, 0.1);
            for (int c = 0; c < D; c++) keys[5 * D + c] = 4 * u[c];
            float[] q = new float[prompt * 2 * D];
            for (int r = 0; r < prompt * 2; r++) for (int c = 0; c < D; c++) q[r * D + c] = 2 * u[c] + (float) rnd.nextGaussian() * 0.1f;
            f.step(q, keys, gaussian(rnd, prompt * D, 1), prompt, true);
            // the heavy hitters are the three largest column sums of the prompt's attention outside the window
            double[] colSums = columnSums(keys, q, prompt, g);
            Set<Integer> expected = new HashSet<>(List.of(10, 11));
            expected.addAll(topK(colSums, 10, 3));
            assertThat(f.live(0, 0)).containsExactlyInAnyOrderElementsOf(expected).contains(5);
            for (int step = 0; step < 6; step++) {
                float[] qs = new float[2 * D];
                for (int c = 0; c < 2 * D; c++) qs[c] = 2 * u[c % D];
                f.step(qs, gaussian(rnd, D, 0.1), gaussian(rnd, D, 1), 1, false);
                int len = f.seq.length();
                assertThat(f.live(0, 0)).hasSize(5).contains(5, len - 1, len - 2);
            }
        }
    }

    /** Σ over query rows and the two query heads of the causal softmax probabilities per key. */
    static double[] columnSums(float[] keys, float[] q, int n, KvGeometry g) {
        double[] sums = new double[n];
        for (int r = 0; r < n; r++) {
            for (int j = 0; j < g.heads(); j++) {
                double[] logit = new double[r + 1];
                double max = Double.NEGATIVE_INFINITY;
                for (int t = 0; t <= r; t++) {
                    double dot = 0;
                    for (int c = 0; c < D; c++) dot += q[(r * g.heads() + j) * D + c] * keys[t * g.kvDim() + c];
                    logit[t] = dot / Math.sqrt(D);
                    max = Math.max(max, logit[t]);
                }
                double z = 0;
                for (double l : logit) z += Math.exp(l - max);
                for (int t = 0; t <= r; t++) sums[t] += Math.exp(logit[t] - max) / z;
            }
        }
        return sums;
    }

    static List<Integer> topK(double[] score, int candidates, int k) {
        List<Integer> idx = new ArrayList<>();
        for (int i = 0; i < candidates; i++) idx.add(i);
        idx.sort((a, b) -> Double.compare(score[b], score[a]));
        return idx.subList(0, k);
    }

    // ------------------------------------------------------------------ HashEvict

    @Test
    void hashEvictDropsTheKeyWithTheLargestHammingDistanceBeforeAttention() {
        KvGeometry g = geometry(1, 2, 1);
        Random rnd = new Random(3);
        String spec = "fp32+hashevict:budget=10,sinks=1,window=2,bits=24,seed=5";
        HashEviction policy = (HashEviction) dev.kvserve.kvcache.KvCachePolicy.parse(spec).eviction().orElseThrow();
        float[] r = policy.projections(g)[0];
        try (Feed f = new Feed(g, spec, 4)) {
            List<float[]> keys = new ArrayList<>();
            float[] prompt = gaussian(rnd, 10 * D, 1);
            for (int t = 0; t < 10; t++) keys.add(java.util.Arrays.copyOfRange(prompt, t * D, t * D + D));
            f.step(gaussian(rnd, 10 * 2 * D, 1), prompt, gaussian(rnd, 10 * D, 1), 10, true);
            assertThat(f.live(0, 0)).hasSize(10);
            for (int step = 0; step < 8; step++) {
                int pos = f.seq.length();
                float[] q = gaussian(rnd, 2 * D, 1);
                float[] k = gaussian(rnd, D, 1);
                keys.add(k);
                TreeSet<Integer> before = f.live(0, 0);
                // expected victim: largest summed Hamming distance to the two query heads' codes, sinks and window excluded
                int victim = -1, worst = -1;
                for (int p : before) {
                    if (p < 1 || p >= pos + 1 - 2) continue;
                    int dist = 0;
                    for (int j = 0; j < 2; j++) {
                        int[] qc = HashEviction.code(r, 24, q, j * D, D);
                        int[] kc = HashEviction.code(r, 24, keys.get(p), 0, D);
                        dist += Integer.bitCount(qc[0] ^ kc[0]);
                    }
                    if (dist > worst) {
                        worst = dist;
                        victim = p;
                    }
                }
                var sel = f.step(q, k, gaussian(rnd, D, 1), 1, false);
                assertThat(sel).isNull();
                TreeSet<Integer> after = f.live(0, 0);
                TreeSet<Integer> expected = new TreeSet<>(before);
                expected.add(pos);
                expected.remove(victim);
                assertThat(after).as("step at %d evicts %d", pos, victim).isEqualTo(expected);
            }
        }
    }

    @Test
    void hashEvictSeesAnAntiparallelKeyAtFullHammingDistance() {
        KvGeometry g = geometry(1, 1, 1);
        Random rnd = new Random(4);
        try (Feed f = new Feed(g, "fp32+hashevict:budget=6,sinks=0,window=1,bits=64,seed=9", 4)) {
            float[] q = gaussian(rnd, D, 1);
            float[] keys = gaussian(rnd, 6 * D, 0.3);
            for (int c = 0; c < D; c++) {
                keys[2 * D + c] = -q[c];
                keys[4 * D + c] = 3 * q[c];
            }
            f.step(gaussian(rnd, 6 * D, 1), keys, gaussian(rnd, 6 * D, 1), 6, true);
            HashEviction policy = (HashEviction) f.seq.policy().eviction().orElseThrow();
            float[] r = policy.projections(g)[0];
            int[] qc = HashEviction.code(r, 64, q, 0, D), kc = HashEviction.code(r, 64, keys, 2 * D, D);
            assertThat(Integer.bitCount(qc[0] ^ kc[0]) + Integer.bitCount(qc[1] ^ kc[1])).isEqualTo(64);
            f.step(q, gaussian(rnd, D, 0.3), gaussian(rnd, D, 1), 1, false);
            assertThat(f.live(0, 0)).doesNotContain(2).contains(4, 6).hasSize(6);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"current", "accumulated"})
    void hashEvictThinsAPromptChunkExactlyAsIfTheQueriesCameOneByOne(String score) {
        // HashEvict decides from hash codes only, so a prompt chunk must end with the cache that feeding the
        // same queries and keys one step at a time leaves; deciding the whole excess with the last query alone
        // (the earlier behaviour) keeps a different set.
        KvGeometry g = geometry(1, 2, 1);
        String spec = "fp32+hashevict:budget=10,sinks=1,window=2,bits=16,seed=7,score=" + score;
        Random rnd = new Random(11);
        int prompt = 30;
        float[] q = gaussian(rnd, prompt * 2 * D, 1), k = gaussian(rnd, prompt * D, 1), v = gaussian(rnd, prompt * D, 1);
        TreeSet<Integer> chunked, streamed;
        try (Feed f = new Feed(g, spec, 4)) {
            f.step(q, k, v, prompt, true);
            chunked = f.live(0, 0);
        }
        try (Feed f = new Feed(g, spec, 4)) {
            for (int t = 0; t < prompt; t++) {
                f.step(java.util.Arrays.copyOfRange(q, t * 2 * D, (t + 1) * 2 * D), java.util.Arrays.copyOfRange(k, t * D, (t + 1) * D),
                        java.util.Arrays.copyOfRange(v, t * D, (t + 1) * D), 1, t == prompt - 1);
            }
            streamed = f.live(0, 0);
        }
        assertThat(streamed).hasSize(10).contains(0, prompt - 2, prompt - 1);
        assertThat(chunked).isEqualTo(streamed);
        if (score.equals("current")) {
            // what the last query alone would keep: its 7 nearest evictable tokens (sinks and window aside)
            HashEviction policy = (HashEviction) dev.kvserve.kvcache.KvCachePolicy.parse(spec).eviction().orElseThrow();
            float[] r = policy.projections(g)[0];
            List<Integer> order = new ArrayList<>();
            int[] dist = new int[prompt];
            for (int p = 1; p < prompt - 2; p++) {
                order.add(p);
                for (int j = 0; j < 2; j++) {
                    dist[p] += Integer.bitCount(HashEviction.code(r, 16, q, ((prompt - 1) * 2 + j) * D, D)[0]
                            ^ HashEviction.code(r, 16, k, p * D, D)[0]);
                }
            }
            order.sort((a, b) -> dist[a] != dist[b] ? Integer.compare(dist[a], dist[b]) : Integer.compare(b, a));
            TreeSet<Integer> lastQueryOnly = new TreeSet<>(order.subList(0, 7));
            lastQueryOnly.addAll(List.of(0, prompt - 2, prompt - 1));
            assertThat(streamed).as("this input separates the two rules").isNotEqualTo(lastQueryOnly);
        }
    }

    // ------------------------------------------------------------------ StreamingLLM with a fractional window

    @Test
    void sinkWindowAsAFractionKeepsTheSinksAndThatShareOfTheSequence() {
        KvGeometry g = geometry(1, 2, 1);
        Random rnd = new Random(12);
        try (Feed f = new Feed(g, "fp32+sink:sinks=2,window=0.25", 4)) {
            int prompt = 20;
            f.step(gaussian(rnd, prompt * 2 * D, 1), gaussian(rnd, prompt * D, 1), gaussian(rnd, prompt * D, 1), prompt, true);
            for (int step = 0; step < 30; step++) {
                int len = f.seq.length();
                int recent = (int) Math.ceil(0.25 * len);
                TreeSet<Integer> expected = new TreeSet<>(List.of(0, 1));
                for (int p = len - recent; p < len; p++) expected.add(p);
                assertThat(f.live(0, 0)).as("length %d", len).isEqualTo(expected);
                f.step(gaussian(rnd, 2 * D, 1), gaussian(rnd, D, 1), gaussian(rnd, D, 1), 1, false);
            }
        }
        KeyWindow w = new KeyWindow(2, Budget.ofFraction(0.25));
        // query at position 99 (100 tokens): sinks 0, 1 and the last 25 positions 75..99, sinks seen at distance <= 26
        assertThat(w.visible(99, 75)).isTrue();
        assertThat(w.visible(99, 74)).isFalse();
        assertThat(w.visible(99, 1)).isTrue();
        assertThat(w.sinkShift(99)).isEqualTo(99 - 26);
    }

    // ------------------------------------------------------------------ D2O

    @ParameterizedTest
    @ValueSource(strings = {"paper", "code"})
    void d2oMergesEachEvictedTokenIntoItsMostSimilarKeptTokenWithThePapersWeights(String merge) {
        KvGeometry g = geometry(1, 2, 1);
        Random rnd = new Random(5);
        try (Feed f = new Feed(g, "fp32+d2o:budget=0.5,window=0.25,sinks=1,skip=none,merge=" + merge, 4)) {
            int prompt = 16;
            float[] keys = gaussian(rnd, prompt * D, 1);
            // near-duplicates so that some evicted tokens have a clear partner
            for (int c = 0; c < D; c++) {
                keys[7 * D + c] = keys[2 * D + c] + (float) rnd.nextGaussian() * 0.05f;
                keys[9 * D + c] = keys[4 * D + c] + (float) rnd.nextGaussian() * 0.05f;
            }
            f.step(gaussian(rnd, prompt * 2 * D, 1), keys, gaussian(rnd, prompt * D, 1), prompt, true);
            assertThat(f.live(0, 0)).as("no eviction before the first decode step").hasSize(prompt);
            double tau = Double.NaN;
            int merges = 0;
            for (int step = 0; step < 4; step++) {
                java.util.Map<Integer, float[]> k0 = new java.util.HashMap<>(), v0 = new java.util.HashMap<>();
                for (int p : f.live(0, 0)) {
                    k0.put(p, f.key(0, 0, p));
                    v0.put(p, f.value(0, 0, p));
                }
                int pos = f.seq.length();
                float[] k = gaussian(rnd, D, 1), v = gaussian(rnd, D, 1);
                k0.put(pos, k);
                v0.put(pos, v);
                f.step(gaussian(rnd, 2 * D, 1), k, v, 1, false);
                TreeSet<Integer> kept = f.live(0, 0);
                int len = pos + 1;
                assertThat(kept.size()).isLessThanOrEqualTo((int) Math.ceil(0.5 * len));
                assertThat(kept).contains(0, len - 1);
                List<Integer> evicted = new ArrayList<>(k0.keySet());
                evicted.removeAll(kept);
                if (evicted.isEmpty()) continue;
                double[] m = new double[evicted.size()];
                int[] partner = new int[evicted.size()];
                double sum = 0;
                for (int i = 0; i < evicted.size(); i++) {
                    m[i] = Double.NEGATIVE_INFINITY;
                    for (int r : kept) {
                        double c = cosine(k0.get(evicted.get(i)), k0.get(r));
                        if (c > m[i]) {
                            m[i] = c;
                            partner[i] = r;
                        }
                    }
                    sum += m[i];
                }
                tau = Double.isNaN(tau) ? sum / evicted.size() : 0.5 * tau + 0.5 * sum / evicted.size();
                for (int r : kept) {
                    double[] ek = new double[D], ev = new double[D];
                    List<Integer> into = new ArrayList<>();
                    for (int i = 0; i < evicted.size(); i++) if (partner[i] == r && m[i] >= tau) into.add(i);
                    double z = merge.equals("paper") ? Math.E : 1 + into.size();
                    if (merge.equals("paper")) for (int i : into) z += Math.exp(m[i]);
                    double self = merge.equals("paper") ? Math.E / z : 1 / z;
                    for (int c = 0; c < D; c++) {
                        ek[c] = self * k0.get(r)[c];
                        ev[c] = self * v0.get(r)[c];
                    }
                    for (int i : into) {
                        double w = (merge.equals("paper") ? Math.exp(m[i]) : m[i]) / z;
                        for (int c = 0; c < D; c++) {
                            ek[c] += w * k0.get(evicted.get(i))[c];
                            ev[c] += w * v0.get(evicted.get(i))[c];
                        }
                    }
                    merges += into.size();
                    float[] gotK = f.key(0, 0, r), gotV = f.value(0, 0, r);
                    for (int c = 0; c < D; c++) {
                        assertThat((double) gotK[c]).as("key of %d, step %d", r, step).isCloseTo(ek[c], within(1e-5));
                        assertThat((double) gotV[c]).isCloseTo(ev[c], within(1e-5));
                    }
                }
            }
            assertThat(merges).isPositive();
        }
    }

    static double cosine(float[] a, float[] b) {
        double dot = 0, na = 0, nb = 0;
        for (int c = 0; c < a.length; c++) {
            dot += (double) a[c] * b[c];
            na += (double) a[c] * a[c];
            nb += (double) b[c] * b[c];
        }
        return dot / Math.sqrt(na * nb);
    }

    @Test
    void d2oLayerBudgetsFollowSoftmaxOfNegativeDensity() {
        // σ = mean over heads of min-max normalised column-sum variances
        float[][] sums = {{1, 1, 1, 1}, {4, 0, 0, 0}, {2, 0, 2, 0}};
        double v1 = 4.0, v2 = 4.0 / 3;
        assertThat(D2oEviction.density(sums, 4)).isCloseTo((0 + v1 / (v1 + 1e-6) + v2 / (v1 + 1e-6)) / 3, within(1e-12));
        double[] r = D2oEviction.layerRatios(new double[] {0, 1, 0.5}, 0.2);
        double z = 1 + Math.exp(-1) + Math.exp(-0.5);
        assertThat(r[0]).isCloseTo(1 / z * 3 * 0.2, within(1e-12));
        assertThat(r[1]).isCloseTo(Math.exp(-1) / z * 3 * 0.2, within(1e-12));
        assertThat(D2oEviction.layerRatios(new double[] {0, 50}, 0.9)[0]).isEqualTo(1.0);
        assertThat(D2oEviction.layerRatios(new double[] {0, 50}, 0.9)[1]).isEqualTo(0.01);
    }

    @Test
    void d2oSpreadsTheBudgetOverLayersAndKeepsTheTotal() {
        KvGeometry g = geometry(3, 4, 2);
        Random rnd = new Random(6);
        try (Feed f = new Feed(g, "fp32+d2o:budget=0.25,window=0.1,sinks=0,skip=none,merge=none", 4)) {
            int prompt = 40;
            for (int l = 0; l < 3; l++) {
                float[] q = gaussian(rnd, prompt * g.heads() * D, l == 0 ? 0.2 : 3);
                f.layer(l, q, gaussian(rnd, prompt * g.kvDim(), 1), gaussian(rnd, prompt * g.kvDim(), 1), prompt, true);
            }
            f.seq.advance(prompt);
            for (int l = 0; l < 3; l++) f.layer(l, gaussian(rnd, g.heads() * D, 1), gaussian(rnd, g.kvDim(), 1), gaussian(rnd, g.kvDim(), 1), 1, false);
            f.seq.advance(1);
            int total = 0;
            Set<Integer> sizes = new HashSet<>();
            for (int l = 0; l < 3; l++) {
                int n = f.live(l, 0).size();
                assertThat(f.live(l, 1)).hasSize(n);
                total += n;
                sizes.add(n);
            }
            // Σ_l ratio_l = L·ρ when no layer is clamped; each layer truncates its two parts down
            assertThat(total).isBetween(3 * 11 - 6, 3 * 11);
            assertThat(sizes).as("layers of different attention density get different budgets").hasSizeGreaterThan(1);
        }
    }

    // ------------------------------------------------------------------ SnapKV

    @Test
    void snapKvKeepsThePositionsTheObservationWindowVotesForAndTheirNeighbours() {
        KvGeometry g = geometry(1, 2, 1);
        Random rnd = new Random(7);
        int prompt = 30, window = 4, budget = 12;
        float[] u = unit(1);
        float[] keys = gaussian(rnd, prompt * D, 0.3);
        for (int c = 0; c < D; c++) {
            keys[7 * D + c] += 3 * u[c];
            keys[19 * D + c] += 2.5f * u[c];
        }
        float[] q = gaussian(rnd, prompt * 2 * D, 0.3);
        for (int r = prompt - window; r < prompt; r++) for (int j = 0; j < 2; j++) q[(r * 2 + j) * D + 1] += 3;
        float[] values = gaussian(rnd, prompt * D, 1);
        // votes as the SnapKV code computes them, per query head, pooled, then averaged over the group
        double[] votes = new double[prompt - window];
        for (int j = 0; j < 2; j++) {
            double[] v = new double[prompt - window];
            for (int r = prompt - window; r < prompt; r++) {
                double[] logit = new double[r + 1];
                double max = Double.NEGATIVE_INFINITY, z = 0;
                for (int t = 0; t <= r; t++) {
                    for (int c = 0; c < D; c++) logit[t] += q[(r * 2 + j) * D + c] * keys[t * D + c];
                    logit[t] /= Math.sqrt(D);
                    max = Math.max(max, logit[t]);
                }
                for (double l : logit) z += Math.exp(l - max);
                for (int t = 0; t < prompt - window; t++) v[t] += Math.exp(logit[t] - max) / z;
            }
            for (int t = 0; t < prompt - window; t++) {
                double s = 0;
                for (int o = -1; o <= 1; o++) if (t + o >= 0 && t + o < prompt - window) s += v[t + o];
                votes[t] += s / 3 / 2;
            }
        }
        Set<Integer> expected = new TreeSet<>(topK(votes, prompt - window, budget - window));
        for (int p = prompt - window; p < prompt; p++) expected.add(p);
        assertThat(expected).contains(6, 7, 8, 18, 19, 20);
        String spec = "fp32+snapkv:budget=" + budget + ",window=" + window + ",kernel=3,pooling=avg";
        // one prompt step, a chunked prompt, and a prompt whose end is only seen at the first decode step
        for (int[] chunks : new int[][] {{30}, {17, 13}, {25, 5}}) {
            boolean marked = chunks.length < 2 || chunks[0] != 25;
            try (Feed f = new Feed(g, spec, 4)) {
                int at = 0;
                for (int c = 0; c < chunks.length; c++) {
                    int n = chunks[c];
                    f.step(java.util.Arrays.copyOfRange(q, at * 2 * D, (at + n) * 2 * D), java.util.Arrays.copyOfRange(keys, at * D, (at + n) * D),
                            java.util.Arrays.copyOfRange(values, at * D, (at + n) * D), n, marked && c == chunks.length - 1);
                    at += n;
                }
                if (!marked) {
                    assertThat(f.live(0, 0)).hasSize(prompt);
                    f.step(gaussian(rnd, 2 * D, 1), gaussian(rnd, D, 1), gaussian(rnd, D, 1), 1, false);
                    expected.add(prompt);
                }
                assertThat(f.live(0, 0)).as("chunks %s", java.util.Arrays.toString(chunks)).isEqualTo(expected);
                for (int step = 0; step < 3; step++) f.step(gaussian(rnd, 2 * D, 1), gaussian(rnd, D, 1), gaussian(rnd, D, 1), 1, false);
                assertThat(f.live(0, 0)).as("decoding is not compressed").hasSize(expected.size() + (marked ? 3 : 3));
                if (!marked) expected.remove(prompt);
            }
        }
    }

    @Test
    void snapKvPoolingMatchesAvgAndMaxPool1d() {
        float[] v = {1, 0, 0, 4, 0};
        assertThat(SnapKvEviction.pool(v, 5, 3, false)).containsExactly(1 / 3f, 1 / 3f, 4 / 3f, 4 / 3f, 4 / 3f);
        assertThat(SnapKvEviction.pool(v, 5, 3, true)).containsExactly(1, 1, 4, 4, 4);
        // even kernels: output i pools [i-2, i+1], the first n outputs of max_pool1d(padding=2)
        assertThat(SnapKvEviction.pool(v, 5, 4, true)).containsExactly(1, 1, 4, 4, 4);
    }

    // ------------------------------------------------------------------ memory

    @ParameterizedTest
    @ValueSource(strings = {"fp32+l2:budget=8,skip=none", "int4:group=4+h2o:budget=8,window=3", "fp16+hashevict:budget=8,window=2",
            "int8+d2o:budget=0.25,window=0.1,skip=none", "fp16+snapkv:budget=10,window=4", "fp32+sink:sinks=2,window=6"})
    void evictionReturnsBlocksToThePool(String spec) {
        KvGeometry g = geometry(2, 4, 2);
        Random rnd = new Random(8);
        try (Feed f = new Feed(g, spec, 4)) {
            int prompt = 48;
            f.step(gaussian(rnd, prompt * g.heads() * D, 1), gaussian(rnd, prompt * g.kvDim(), 1), gaussian(rnd, prompt * g.kvDim(), 1), prompt, true);
            KvPoolStats afterPrompt = f.manager.stats();
            long full = f.manager.bytesFor(dev.kvserve.kvcache.KvCachePolicy.parse(f.seq.policy().format().spec()), prompt);
            for (int step = 0; step < 3; step++) {
                f.step(gaussian(rnd, g.heads() * D, 1), gaussian(rnd, g.kvDim(), 1), gaussian(rnd, g.kvDim(), 1), 1, false);
            }
            KvPoolStats now = f.manager.stats();
            assertThat(now.bytesUsed()).isEqualTo(f.seq.bytesHeld());
            assertThat(now.bytesUsed()).as("%s holds less than the uncompressed cache", spec).isLessThan(full / 2);
            assertThat(now.blocksUsed()).isLessThan(2L * g.kvHeads() * (prompt / 4));
            assertThat(f.seq.bytesHeld()).isLessThanOrEqualTo(f.manager.bytesFor(f.seq.policy(), f.seq.length()));
            assertThat(afterPrompt.blocksUsed() + afterPrompt.blocksFree()).isPositive();
        }
    }
}
