package dev.kvserve.kvcache.select;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.Lanes;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.QueryRows;
import dev.kvserve.kvcache.evict.Budget;
import dev.kvserve.kvcache.evict.LayerSet;
import dev.kvserve.kvcache.policy.Params;
import java.util.Arrays;
import java.util.Random;

/**
 * ClusterKV (Liu et al., "ClusterKV: Manipulating LLM KV Cache in Semantic Space for Recallable
 * Compression", DAC 2025; methods.md §7), after the authors' {@code cluster_attention.py} and system
 * design. Nothing is evicted: keys are grouped per KV head by cosine k-means and each decode step
 * recalls whole clusters.
 *
 * <ul>
 *   <li>When the prompt is complete, each KV head of every layer not in {@code skip} clusters its
 *       prompt keys (all but the first {@code sinks}) into {@code clusters} clusters
 *       ({@code iterations} rounds); the cluster id lives in a lane next to each token.</li>
 *   <li>Incrementally, as tokens arrive: generated tokens stay unclustered (and always attended)
 *       until {@code window} of them have gathered; they are then clustered on their own into
 *       {@code window_clusters} clusters added to the index (the paper's system path).</li>
 *   <li>At a decode step each query head scores every centroid by {@code q · c}, takes clusters in
 *       that order until {@code budget - sinks} tokens are covered, truncates the last cluster to the
 *       budget exactly ("truc"), and attends to sinks ∪ those tokens ∪ the unclustered recent tokens.
 *       {@code gqa=avg} scores with the mean query of the group instead (one set per KV head).</li>
 * </ul>
 * The selected slots are read in place by the sparse attention path; unselected tokens stay cached and
 * can be recalled by a later query. Prompt steps and layers in {@code skip} attend densely.
 */
public final class ClusterKvSelector implements TokenSelector {

    static final int CLUSTER = 0;

    private final Params params;
    private final Budget budget;
    private final int sinks;
    private final int clusters;
    private final int iterations;
    private final int window;
    private final int windowClusters;
    private final LayerSet skip;
    private final boolean groupAverage;
    private final long seed;

    public ClusterKvSelector(Params params) {
        this.params = params;
        this.budget = (Budget) params.values().get("budget");
        this.sinks = params.getInt("sinks");
        this.clusters = params.getInt("clusters");
        this.iterations = params.getInt("iterations");
        this.window = params.getInt("window");
        this.windowClusters = params.getInt("window_clusters");
        this.skip = (LayerSet) params.values().get("skip");
        this.groupAverage = params.getString("gqa").equals("avg");
        this.seed = params.getInt("seed");
    }

    @Override
    public Params params() {
        return params;
    }

    @Override
    public Lanes lanes() {
        return new Lanes(0, 1);
    }

    @Override
    public SelectorState open(KvGeometry geometry, int blockTokens) {
        return new State(geometry, skip.resolve(geometry.layers()));
    }

    private final class State implements SelectorState {
        private final KvGeometry g;
        private final boolean[] skipped;
        private final boolean[] promptDone;
        /** [layer][kvHead] centroids, cluster j at j*headDim; ids in lanes are j+1. */
        private final float[][][] centroids;
        private final int[][] count;

        State(KvGeometry g, boolean[] skipped) {
            this.g = g;
            this.skipped = skipped;
            this.promptDone = new boolean[g.layers()];
            this.centroids = new float[g.layers()][g.kvHeads()][0];
            this.count = new int[g.layers()][g.kvHeads()];
        }

        State(State src) {
            this.g = src.g;
            this.skipped = src.skipped;
            this.promptDone = src.promptDone.clone();
            this.centroids = new float[src.centroids.length][][];
            for (int l = 0; l < centroids.length; l++) {
                centroids[l] = new float[src.centroids[l].length][];
                for (int h = 0; h < centroids[l].length; h++) centroids[l][h] = src.centroids[l][h].clone();
            }
            this.count = new int[src.count.length][];
            for (int l = 0; l < count.length; l++) count[l] = src.count[l].clone();
        }

        @Override
        public void afterPrefill(LayerKv kv) {
            int layer = kv.layer();
            if (promptDone[layer]) return;
            promptDone[layer] = true;
            if (skipped[layer]) return;
            for (int h = 0; h < g.kvHeads(); h++) clusterUnclustered(kv, h, clusters, Integer.MAX_VALUE);
        }

        @Override
        public void onAppend(LayerKv kv, KvRows rows) {
            int layer = kv.layer();
            if (!promptDone[layer] || skipped[layer]) return;
            for (int h = 0; h < g.kvHeads(); h++) {
                int waiting = 0;
                for (int s = 0; s < kv.slots(h); s++) {
                    int p = kv.position(h, s);
                    if (p >= sinks && p < rows.firstPosition() && kv.slotInt(h, s, CLUSTER) == 0) waiting++;
                }
                if (waiting >= window) clusterUnclustered(kv, h, windowClusters, rows.firstPosition());
            }
        }

        /** Clusters the live, unclustered, non-sink tokens at positions < before into up to k new clusters. */
        private void clusterUnclustered(LayerKv kv, int h, int k, int before) {
            int d = g.headDim(), layer = kv.layer();
            int[] slots = new int[kv.slots(h)];
            int n = 0;
            for (int s = 0; s < kv.slots(h); s++) {
                int p = kv.position(h, s);
                if (p >= sinks && p < before && kv.slotInt(h, s, CLUSTER) == 0) slots[n++] = s;
            }
            if (n == 0) return;
            float[] keys = new float[n * d];
            for (int i = 0; i < n; i++) kv.readKey(h, slots[i], keys, i * d);
            int base = count[layer][h];
            // seeded per (layer, head, clustering round): deterministic, and forks cluster alike
            Random rnd = new Random(seed * 1_000_003L + (layer * 4099L + h) * 7919L + base);
            CosineKMeans.Result r = CosineKMeans.fit(keys, n, d, k, iterations, rnd);
            float[] c = Arrays.copyOf(centroids[layer][h], (base + r.k()) * d);
            System.arraycopy(r.centroids(), 0, c, base * d, r.k() * d);
            centroids[layer][h] = c;
            count[layer][h] = base + r.k();
            for (int i = 0; i < n; i++) kv.setSlotInt(h, slots[i], CLUSTER, base + r.labels()[i] + 1);
        }

        @Override
        public Selection select(LayerKv kv, QueryRows queries) {
            int layer = kv.layer();
            if (skipped[layer] || !promptDone[layer] || queries.rows() != 1) return null;
            int length = queries.firstPosition() + 1;
            int recall = budget.tokensFor(length) - sinks;
            int group = g.groupSize(), d = g.headDim();
            int[][] perHead = new int[groupAverage ? g.kvHeads() : g.heads()][];
            boolean sparse = false;
            for (int h = 0; h < g.kvHeads(); h++) {
                int n = kv.slots(h);
                int[] label = new int[n];
                int[] size = new int[count[layer][h]];
                int clustered = 0;
                for (int s = 0; s < n; s++) {
                    label[s] = kv.isLive(h, s) ? kv.slotInt(h, s, CLUSTER) : -1;
                    if (label[s] > 0) {
                        size[label[s] - 1]++;
                        clustered++;
                    }
                }
                boolean all = clustered <= Math.max(0, recall);
                sparse |= !all;
                for (int j = 0; j < (groupAverage ? 1 : group); j++) {
                    float[] q = new float[d];
                    if (groupAverage) {
                        for (int t = 0; t < group; t++) {
                            int off = queries.offset(0, h * group + t);
                            for (int c = 0; c < d; c++) q[c] += queries.q()[off + c] / group;
                        }
                    } else {
                        System.arraycopy(queries.q(), queries.offset(0, h * group + j), q, 0, d);
                    }
                    int[] chosen = all ? allLive(label) : recall(q, centroids[layer][h], size, label, Math.max(0, recall));
                    perHead[groupAverage ? h : h * group + j] = chosen;
                }
            }
            if (!sparse) return null;
            return groupAverage ? Selection.perKvHead(perHead, group) : Selection.perQueryHead(perHead);
        }

        private int[] allLive(int[] label) {
            int[] out = new int[label.length];
            int n = 0;
            for (int s = 0; s < label.length; s++) if (label[s] >= 0) out[n++] = s;
            return Arrays.copyOf(out, n);
        }

        /** Sinks and unclustered tokens, plus the best clusters for q up to {@code recall} tokens, as increasing slots. */
        private int[] recall(float[] q, float[] cents, int[] size, int[] label, int recall) {
            int d = g.headDim(), k = size.length;
            double[] score = new double[k];
            Integer[] order = new Integer[k];
            for (int j = 0; j < k; j++) {
                order[j] = j;
                double dot = 0;
                for (int c = 0; c < d; c++) dot += (double) q[c] * cents[j * d + c];
                score[j] = size[j] == 0 ? Double.NEGATIVE_INFINITY : dot;
            }
            Arrays.sort(order, (a, b) -> Double.compare(score[b], score[a]));
            // quota[j]: how many tokens of cluster j to take, in slot order
            int[] quota = new int[k];
            int left = recall;
            for (int i = 0; i < k && left > 0; i++) {
                int j = order[i];
                if (size[j] == 0) break;
                quota[j] = Math.min(size[j], left);
                left -= quota[j];
            }
            int[] out = new int[label.length];
            int n = 0;
            for (int s = 0; s < label.length; s++) {
                int c = label[s];
                if (c == 0) {
                    out[n++] = s;
                } else if (c > 0 && quota[c - 1] > 0) {
                    quota[c - 1]--;
                    out[n++] = s;
                }
            }
            return Arrays.copyOf(out, n);
        }

        @Override
        public SelectorState fork() {
            return new State(this);
        }

        @Override
        public long metadataBytes() {
            long n = 0;
            for (float[][] l : centroids) for (float[] h : l) n += 4L * h.length;
            return n;
        }
    }
}
