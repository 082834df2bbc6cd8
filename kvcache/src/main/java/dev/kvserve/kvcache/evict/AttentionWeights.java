package dev.kvserve.kvcache.evict;

/**
 * Attention probabilities of one step and layer, summed over the requested queries, per query head
 * and cached slot: {@code get(kvHead, g, slot)} is Σ over queries of softmax weight of query head
 * {@code kvHead*groupSize + g} on that slot (dead or invisible slots get 0). Indexed by slot as the
 * {@link dev.kvserve.kvcache.LayerKv} of the same hook sees it.
 */
public final class AttentionWeights {

    /** How per-query-head values are reduced to one per KV head (kvpress/SnapKV: mean, H2O: sum). */
    public enum Reduction { MEAN, MAX, SUM }

    private final int groupSize;
    private final int queries;
    private final float[][] sums;
    private final int[] slots;

    /** {@code sums[kvHead]} is [groupSize][slots[kvHead]]. */
    public AttentionWeights(int groupSize, int queries, int[] slots, float[][] sums) {
        this.groupSize = groupSize;
        this.queries = queries;
        this.slots = slots;
        this.sums = sums;
    }

    public int groupSize() {
        return groupSize;
    }

    /** Number of query rows summed. */
    public int queries() {
        return queries;
    }

    public int slots(int kvHead) {
        return slots[kvHead];
    }

    public float get(int kvHead, int g, int slot) {
        return sums[kvHead][g * slots[kvHead] + slot];
    }

    public float reduce(int kvHead, int slot, Reduction reduction) {
        float[] s = sums[kvHead];
        int n = slots[kvHead];
        float r = reduction == Reduction.MAX ? Float.NEGATIVE_INFINITY : 0f;
        for (int g = 0; g < groupSize; g++) {
            float v = s[g * n + slot];
            r = reduction == Reduction.MAX ? Math.max(r, v) : r + v;
        }
        return reduction == Reduction.MEAN ? r / groupSize : r;
    }

    /** Raw array of one KV head, [groupSize][slots(kvHead)]; do not modify. */
    public float[] raw(int kvHead) {
        return sums[kvHead];
    }
}
