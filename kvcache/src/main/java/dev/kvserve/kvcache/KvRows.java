package dev.kvserve.kvcache;

/**
 * The new keys and values of one layer for consecutive tokens of one sequence, as the attention
 * layer hands them to the cache: rows {@code 0..rows-1} at positions {@code firstPosition..}, each row
 * {@code kvHeads*headDim} floats. Keys come both before and after RoPE so formats and eviction rules
 * take whichever frame they need (HashEvict hashes post-RoPE keys, KVQuant quantizes pre-RoPE keys).
 * Codecs may stash per-token results shared by all heads (e.g. a per-token outlier threshold over the
 * whole {@code kvHeads*headDim} vector) in {@link #memo}.
 */
public final class KvRows {

    private final int layer;
    private final int rows;
    private final int firstPosition;
    private final int kvHeads;
    private final int headDim;
    private final float[] keysPreRope;
    private final float[] keysPostRope;
    private final float[] values;
    private final Object[] memo;

    public KvRows(int layer, int rows, int firstPosition, int kvHeads, int headDim,
                  float[] keysPreRope, float[] keysPostRope, float[] values) {
        int n = rows * kvHeads * headDim;
        if (keysPreRope.length < n || keysPostRope.length < n || values.length < n) {
            throw new IllegalArgumentException("KvRows arrays shorter than rows*kvDim = " + n);
        }
        this.layer = layer;
        this.rows = rows;
        this.firstPosition = firstPosition;
        this.kvHeads = kvHeads;
        this.headDim = headDim;
        this.keysPreRope = keysPreRope;
        this.keysPostRope = keysPostRope;
        this.values = values;
        this.memo = new Object[rows];
    }

    public int layer() {
        return layer;
    }

    public int rows() {
        return rows;
    }

    public int firstPosition() {
        return firstPosition;
    }

    public int position(int row) {
        return firstPosition + row;
    }

    public int kvHeads() {
        return kvHeads;
    }

    public int headDim() {
        return headDim;
    }

    /** Offset of head {@code kvHead} of {@code row} in the three arrays. */
    public int offset(int row, int kvHead) {
        return (row * kvHeads + kvHead) * headDim;
    }

    /** Offset of the whole row (all KV heads) in the three arrays. */
    public int rowOffset(int row) {
        return row * kvHeads * headDim;
    }

    /** [rows][kvHeads*headDim], keys as projected (no RoPE). Do not modify. */
    public float[] keysPreRope() {
        return keysPreRope;
    }

    /** [rows][kvHeads*headDim], keys rotated at their own position. Do not modify. */
    public float[] keysPostRope() {
        return keysPostRope;
    }

    /** [rows][kvHeads*headDim]. Do not modify. */
    public float[] values() {
        return values;
    }

    /** Per-row scratch slot for a codec, null until set. */
    public Object memo(int row) {
        return memo[row];
    }

    public void setMemo(int row, Object value) {
        memo[row] = value;
    }
}
