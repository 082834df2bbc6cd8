package dev.kvserve.kvcache.evict;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.QueryRows;
import dev.kvserve.kvcache.policy.Params;

/**
 * SnapKV (Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation", 2024;
 * methods.md §8.3), after the authors' {@code snapkv_utils.py}. Once, when the prompt is complete and
 * longer than {@code budget}: the last {@code window} prompt tokens form the observation window;
 * their queries' softmax attention over the prompt (causal inside the window) is summed over the
 * window, per query head, over the prefix keys; the votes are smoothed with a 1-D pooling of width
 * {@code kernel} (avg or max, stride 1, padding kernel/2 as {@code avg_pool1d}/{@code max_pool1d});
 * the heads of a GQA group average their votes (as kvpress does for GQA) and each KV head keeps the
 * {@code budget - window} prefix tokens with the most votes plus the window. Decoding then proceeds
 * without further compression. The window's queries are kept from the prompt steps, so the votes do
 * not depend on how the prompt was chunked. {@code sinks} (0 by default: SnapKV has none) first
 * tokens may be kept besides, within the budget.
 */
public final class SnapKvEviction implements EvictionPolicy {

    private final Params params;
    private final Budget budget;
    private final int sinks;
    private final int window;
    private final int kernel;
    private final boolean maxPool;

    public SnapKvEviction(Params params) {
        this.params = params;
        this.budget = (Budget) params.values().get("budget");
        this.sinks = params.getInt("sinks");
        this.window = params.getInt("window");
        this.kernel = params.getInt("kernel");
        this.maxPool = params.getString("pooling").equals("max");
        if (!budget.fraction() && budget.value() <= window) {
            throw new IllegalArgumentException("snapkv budget (" + (int) budget.value() + ") must exceed the observation window ("
                    + window + ")");
        }
    }

    @Override
    public Params params() {
        return params;
    }

    @Override
    public EvictionState open(KvGeometry geometry, int blockTokens) {
        return new State(geometry);
    }

    @Override
    public int maxRetainedTokens(int layer, int tokens, int stepTokens) {
        // the prompt is compressed once; generated tokens are all kept and the prompt length is not known here
        return tokens + stepTokens;
    }

    /** Pools votes[0..n) with a window of {@code kernel} centred on each entry (zero/-inf padding). */
    static float[] pool(float[] votes, int n, int kernel, boolean max) {
        float[] out = new float[n];
        int half = kernel / 2;
        for (int i = 0; i < n; i++) {
            float acc = max ? Float.NEGATIVE_INFINITY : 0f;
            for (int j = i - half; j < i - half + kernel; j++) {
                if (j < 0 || j >= n) continue;
                acc = max ? Math.max(acc, votes[j]) : acc + votes[j];
            }
            // avg_pool1d counts the padding: divide by the kernel, not by the entries inside
            out[i] = max ? acc : acc / kernel;
        }
        return out;
    }

    private final class State implements EvictionState {
        private final KvGeometry g;
        /** Per layer, the last window query rows seen before the prompt ended: [rows][heads*headDim] and positions. */
        private final float[][] stash;
        private final int[][] stashPos;
        private final int[] stashRows;
        private final boolean[] done;
        private int length;

        State(KvGeometry g) {
            this.g = g;
            this.stash = new float[g.layers()][];
            this.stashPos = new int[g.layers()][];
            this.stashRows = new int[g.layers()];
            this.done = new boolean[g.layers()];
        }

        State(State src) {
            this.g = src.g;
            this.stash = new float[src.stash.length][];
            this.stashPos = new int[src.stash.length][];
            for (int l = 0; l < stash.length; l++) {
                stash[l] = src.stash[l] == null ? null : src.stash[l].clone();
                stashPos[l] = src.stashPos[l] == null ? null : src.stashPos[l].clone();
            }
            this.stashRows = src.stashRows.clone();
            this.done = src.done.clone();
            this.length = src.length;
        }

        @Override
        public void onAppend(LayerKv kv, KvRows rows) {
            length = Math.max(length, rows.firstPosition() + rows.rows());
        }

        @Override
        public void beforeAttention(LayerKv kv, QueryRows queries) {
            int layer = kv.layer();
            if (done[layer]) return;
            int row = g.heads() * g.headDim();
            if (stash[layer] == null) {
                stash[layer] = new float[window * row];
                stashPos[layer] = new int[window];
            }
            // keep the last `window` query rows, oldest first
            int keep = Math.min(window, stashRows[layer] + queries.rows());
            float[] next = new float[window * row];
            int[] nextPos = new int[window];
            int fromOld = keep - Math.min(keep, queries.rows());
            System.arraycopy(stash[layer], (stashRows[layer] - fromOld) * row, next, 0, fromOld * row);
            System.arraycopy(stashPos[layer], stashRows[layer] - fromOld, nextPos, 0, fromOld);
            int fromNew = keep - fromOld;
            System.arraycopy(queries.q(), (queries.rows() - fromNew) * row, next, fromOld * row, fromNew * row);
            for (int i = 0; i < fromNew; i++) nextPos[fromOld + i] = queries.firstPosition() + queries.rows() - fromNew + i;
            stash[layer] = next;
            stashPos[layer] = nextPos;
            stashRows[layer] = keep;
        }

        @Override
        public void afterPrefill(LayerKv kv) {
            int layer = kv.layer();
            if (done[layer]) return;
            done[layer] = true;
            float[] q = stash[layer];
            int[] qPos = stashPos[layer];
            int rows = stashRows[layer];
            stash[layer] = null;
            stashPos[layer] = null;
            int prompt = length;
            int total = budget.tokensFor(prompt);
            if (prompt <= total || q == null) return;
            int w = Math.min(window, rows);
            int prefix = prompt - w;
            int keepPrefix = Math.max(0, total - w);
            int d = g.headDim(), group = g.groupSize(), heads = g.heads();
            double scale = 1.0 / Math.sqrt(d);
            for (int h = 0; h < g.kvHeads(); h++) {
                int n = kv.slots(h);
                int[] pos = new int[n];
                float[] keys = new float[n * d];
                for (int s = 0; s < n; s++) {
                    pos[s] = kv.position(h, s);
                    if (pos[s] >= 0) kv.readKey(h, s, keys, s * d);
                }
                // votes by prefix position, averaged over the group's query heads after pooling
                float[] votes = new float[prefix];
                double[] logits = new double[n];
                for (int j = 0; j < group; j++) {
                    float[] headVotes = new float[prefix];
                    int qh = h * group + j;
                    for (int r = rows - w; r < rows; r++) {
                        int qo = (r * heads + qh) * d;
                        double max = Double.NEGATIVE_INFINITY;
                        for (int s = 0; s < n; s++) {
                            if (pos[s] < 0 || pos[s] > qPos[r]) continue;
                            double dot = 0;
                            for (int c = 0; c < d; c++) dot += (double) q[qo + c] * keys[s * d + c];
                            logits[s] = dot * scale;
                            max = Math.max(max, logits[s]);
                        }
                        double sum = 0;
                        for (int s = 0; s < n; s++) if (pos[s] >= 0 && pos[s] <= qPos[r]) sum += Math.exp(logits[s] - max);
                        for (int s = 0; s < n; s++) {
                            if (pos[s] >= 0 && pos[s] <= qPos[r] && pos[s] < prefix) headVotes[pos[s]] += (float) (Math.exp(logits[s] - max) / sum);
                        }
                    }
                    float[] pooled = pool(headVotes, prefix, kernel, maxPool);
                    for (int p = 0; p < prefix; p++) votes[p] += pooled[p] / group;
                }
                int head = h;
                Retention.Protection keepWindow = new Retention.Protection(sinks, prefix);
                Retention.evictDownTo(kv, h, keepPrefix + kv.liveTokens(h) - livePrefix(kv, h, prefix), keepWindow,
                        s -> votes[kv.position(head, s)]);
            }
        }

        private int livePrefix(LayerKv kv, int h, int prefix) {
            int c = 0;
            for (int s = 0; s < kv.slots(h); s++) {
                int p = kv.position(h, s);
                if (p >= 0 && p < prefix) c++;
            }
            return c;
        }

        @Override
        public EvictionState fork() {
            return new State(this);
        }

        @Override
        public long metadataBytes() {
            long n = 0;
            for (float[] s : stash) if (s != null) n += 4L * s.length;
            return n;
        }
    }
}
