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

/**
 * Quest (Tang et al., "Quest: Query-Aware Sparsity for Efficient Long-Context LLM Inference", ICML
 * 2024; methods.md §8.4). The whole cache stays; it is cut into pages of {@code page} consecutive
 * slots and each page keeps the element-wise minimum and maximum of its (post-RoPE) keys, updated as
 * tokens arrive. At a decode step each query head rates every page by
 * {@code U = Σ_i max(q_i·max_i, q_i·min_i)}, an upper bound of {@code q·k} over the page's keys,
 * and attends only to the slots of its {@code budget / page} best pages, the newest page always
 * among them. Layers in {@code skip} (the first two, as the paper) and prompt steps attend densely.
 *
 * <p>Pages are over slots, which are positions while nothing is evicted. When an eviction rule
 * compacts the cache, moved tokens are detected through a lane stamping each token with the page its
 * bound was last computed for, and their pages are recomputed before use; evicted tokens only leave
 * their page's bound looser, never too low.
 */
public final class QuestSelector implements TokenSelector {

    static final int STAMP = 0;

    private final Params params;
    private final Budget budget;
    private final int page;
    private final LayerSet skip;

    public QuestSelector(Params params) {
        this.params = params;
        this.budget = (Budget) params.values().get("budget");
        this.page = params.getInt("page");
        this.skip = (LayerSet) params.values().get("skip");
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

    /** Quest's criticality: Σ_i max(q_i·max_i, q_i·min_i) for the page at {@code off}. */
    static double criticality(float[] q, int qOff, float[] min, float[] max, int off, int d) {
        double u = 0;
        for (int i = 0; i < d; i++) {
            float qi = q[qOff + i];
            u += Math.max(qi * max[off + i], qi * min[off + i]);
        }
        return u;
    }

    final class State implements SelectorState {
        private final KvGeometry g;
        private final boolean[] skipped;
        /** [layer][kvHead] per page: min and max of keys, page p at p*headDim. */
        private final float[][][] min;
        private final float[][][] max;

        State(KvGeometry g, boolean[] skipped) {
            this.g = g;
            this.skipped = skipped;
            this.min = new float[g.layers()][g.kvHeads()][0];
            this.max = new float[g.layers()][g.kvHeads()][0];
        }

        State(State src) {
            this.g = src.g;
            this.skipped = src.skipped;
            this.min = deepCopy(src.min);
            this.max = deepCopy(src.max);
        }

        private static float[][][] deepCopy(float[][][] a) {
            float[][][] c = new float[a.length][][];
            for (int l = 0; l < a.length; l++) {
                c[l] = new float[a[l].length][];
                for (int h = 0; h < a[l].length; h++) c[l][h] = a[l][h].clone();
            }
            return c;
        }

        @Override
        public void onAppend(LayerKv kv, KvRows rows) {
            int layer = kv.layer();
            if (skipped[layer]) return;
            int d = g.headDim();
            for (int h = 0; h < g.kvHeads(); h++) {
                int n = kv.slots(h);
                ensurePages(layer, h, (n + page - 1) / page);
                int first = n;
                while (first > 0) {
                    int p = kv.position(h, first - 1);
                    if (p >= 0 && p < rows.firstPosition()) break;
                    first--;
                }
                // forward, so that the first slot of a new page starts its bound before the others widen it
                for (int s = first; s < n; s++) {
                    int p = kv.position(h, s);
                    if (p < 0) continue;
                    include(layer, h, s, rows.keysPostRope(), rows.offset(p - rows.firstPosition(), h), d, s % page == 0);
                    kv.setSlotInt(h, s, STAMP, s / page + 1);
                }
            }
        }

        /** Widens the bound of slot s's page by a key; {@code reset} starts the page from it. */
        private void include(int layer, int h, int s, float[] key, int off, int d, boolean reset) {
            int o = (s / page) * d;
            float[] lo = min[layer][h], hi = max[layer][h];
            for (int c = 0; c < d; c++) {
                float v = key[off + c];
                if (reset) {
                    lo[o + c] = v;
                    hi[o + c] = v;
                } else {
                    lo[o + c] = Math.min(lo[o + c], v);
                    hi[o + c] = Math.max(hi[o + c], v);
                }
            }
        }

        private void ensurePages(int layer, int h, int pages) {
            int need = pages * g.headDim();
            if (min[layer][h].length < need) {
                min[layer][h] = Arrays.copyOf(min[layer][h], Math.max(need, 2 * min[layer][h].length));
                max[layer][h] = Arrays.copyOf(max[layer][h], Math.max(need, 2 * max[layer][h].length));
            }
        }

        /** Recomputes the pages holding a token whose bound was computed elsewhere (after compaction); returns live tokens per page. */
        private int[] refresh(LayerKv kv, int layer, int h) {
            int n = kv.slots(h), pages = (n + page - 1) / page, d = g.headDim();
            ensurePages(layer, h, pages);
            int[] live = new int[pages];
            boolean[] dirty = new boolean[pages];
            for (int s = 0; s < n; s++) {
                if (!kv.isLive(h, s)) continue;
                live[s / page]++;
                if (kv.slotInt(h, s, STAMP) != s / page + 1) dirty[s / page] = true;
            }
            float[] key = new float[d];
            for (int p = 0; p < pages; p++) {
                if (!dirty[p]) continue;
                boolean first = true;
                for (int s = p * page; s < Math.min(n, (p + 1) * page); s++) {
                    if (!kv.isLive(h, s)) continue;
                    kv.readKey(h, s, key, 0);
                    include(layer, h, s, key, 0, d, first);
                    first = false;
                    kv.setSlotInt(h, s, STAMP, p + 1);
                }
            }
            return live;
        }

        /** Bounds of one page of one head (for tests): [min..., max...]. */
        float[] bounds(int layer, int h, int p) {
            int d = g.headDim();
            float[] b = new float[2 * d];
            System.arraycopy(min[layer][h], p * d, b, 0, d);
            System.arraycopy(max[layer][h], p * d, b, d, d);
            return b;
        }

        @Override
        public Selection select(LayerKv kv, QueryRows queries) {
            int layer = kv.layer();
            if (skipped[layer] || queries.rows() != 1) return null;
            int length = queries.firstPosition() + 1;
            int topPages = Math.max(1, budget.tokensFor(length) / page);
            int group = g.groupSize(), d = g.headDim();
            int[][] perHead = new int[g.heads()][];
            boolean sparse = false;
            for (int h = 0; h < g.kvHeads(); h++) {
                int[] live = refresh(kv, layer, h);
                int pages = live.length;
                int newest = pages - 1;
                while (newest > 0 && live[newest] == 0) newest--;
                int candidates = 0;
                for (int c : live) if (c > 0) candidates++;
                boolean all = candidates <= topPages;
                sparse |= !all;
                for (int j = 0; j < group; j++) {
                    boolean[] chosen = new boolean[pages];
                    if (all) {
                        Arrays.fill(chosen, true);
                    } else {
                        int qOff = queries.offset(0, h * group + j);
                        double[] u = new double[pages];
                        Integer[] order = new Integer[pages];
                        for (int p = 0; p < pages; p++) {
                            order[p] = p;
                            u[p] = live[p] == 0 ? Double.NEGATIVE_INFINITY
                                    : criticality(queries.q(), qOff, min[layer][h], max[layer][h], p * d, d);
                        }
                        u[newest] = Double.POSITIVE_INFINITY;
                        Arrays.sort(order, (a, b) -> Double.compare(u[b], u[a]));
                        for (int i = 0; i < topPages; i++) chosen[order[i]] = true;
                    }
                    int n = kv.slots(h);
                    int[] slots = new int[n];
                    int c = 0;
                    for (int s = 0; s < n; s++) if (chosen[s / page] && kv.isLive(h, s)) slots[c++] = s;
                    perHead[h * group + j] = Arrays.copyOf(slots, c);
                }
            }
            return sparse ? Selection.perQueryHead(perHead) : null;
        }

        @Override
        public SelectorState fork() {
            return new State(this);
        }

        @Override
        public long metadataBytes() {
            long n = 0;
            for (float[][] l : min) for (float[] h : l) n += 8L * h.length;
            return n;
        }
    }
}
