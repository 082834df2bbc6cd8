package dev.kvserve.kvcache;

import java.util.ArrayList;
import java.util.List;

/**
 * A plain in-memory {@link LayerKv} for driving one component's state directly in tests: exact fp32
 * keys (post-RoPE, no rotation: position-free) and values per KV head, lanes, eviction marks slots dead,
 * and {@link #move} imitates the cache's compaction (a token and its lanes change slot).
 */
public final class ArrayLayerKv implements LayerKv {

    private final int layer;
    private final KvGeometry g;
    private final Lanes lanes;
    private final List<List<float[]>> keys = new ArrayList<>();
    private final List<List<float[]>> values = new ArrayList<>();
    private final List<List<Integer>> positions = new ArrayList<>();
    private final List<List<float[]>> floats = new ArrayList<>();
    private final List<List<int[]>> ints = new ArrayList<>();

    public ArrayLayerKv(int layer, KvGeometry g, Lanes lanes) {
        this.layer = layer;
        this.g = g;
        this.lanes = lanes;
        for (int h = 0; h < g.kvHeads(); h++) {
            keys.add(new ArrayList<>());
            values.add(new ArrayList<>());
            positions.add(new ArrayList<>());
            floats.add(new ArrayList<>());
            ints.add(new ArrayList<>());
        }
    }

    /** Appends the rows of {@code rows} to every head, as the cache does before onAppend. */
    public void store(KvRows rows) {
        int d = g.headDim();
        for (int h = 0; h < g.kvHeads(); h++) {
            for (int r = 0; r < rows.rows(); r++) {
                int off = rows.offset(r, h);
                keys.get(h).add(java.util.Arrays.copyOfRange(rows.keysPostRope(), off, off + d));
                values.get(h).add(java.util.Arrays.copyOfRange(rows.values(), off, off + d));
                positions.get(h).add(rows.position(r));
                floats.get(h).add(new float[lanes.floats()]);
                ints.get(h).add(new int[lanes.ints()]);
            }
        }
    }

    /** Moves a live token into a dead slot, lanes included (what compaction does). */
    public void move(int kvHead, int from, int to) {
        if (positions.get(kvHead).get(to) >= 0) throw new IllegalArgumentException("slot " + to + " is live");
        keys.get(kvHead).set(to, keys.get(kvHead).get(from));
        values.get(kvHead).set(to, values.get(kvHead).get(from));
        positions.get(kvHead).set(to, positions.get(kvHead).get(from));
        floats.get(kvHead).set(to, floats.get(kvHead).get(from).clone());
        ints.get(kvHead).set(to, ints.get(kvHead).get(from).clone());
        positions.get(kvHead).set(from, -1);
    }

    @Override public int layer() { return layer; }
    @Override public KvGeometry geometry() { return g; }
    @Override public int blockTokens() { return 16; }
    @Override public int slots(int kvHead) { return positions.get(kvHead).size(); }

    @Override
    public int liveTokens(int kvHead) {
        int n = 0;
        for (int p : positions.get(kvHead)) if (p >= 0) n++;
        return n;
    }

    @Override public boolean isLive(int kvHead, int slot) { return positions.get(kvHead).get(slot) >= 0; }
    @Override public int position(int kvHead, int slot) { return positions.get(kvHead).get(slot); }

    @Override
    public void readKey(int kvHead, int slot, float[] dst, int off) {
        live(kvHead, slot);
        System.arraycopy(keys.get(kvHead).get(slot), 0, dst, off, g.headDim());
    }

    @Override
    public void readKeyPreRope(int kvHead, int slot, float[] dst, int off) {
        readKey(kvHead, slot, dst, off);
    }

    @Override
    public void readValue(int kvHead, int slot, float[] dst, int off) {
        live(kvHead, slot);
        System.arraycopy(values.get(kvHead).get(slot), 0, dst, off, g.headDim());
    }

    @Override
    public void evict(int kvHead, int slot) {
        live(kvHead, slot);
        positions.get(kvHead).set(slot, -1);
    }

    @Override
    public void rewrite(int kvHead, int slot, float[] key, int keyOff, float[] value, int valueOff) {
        live(kvHead, slot);
        keys.get(kvHead).set(slot, java.util.Arrays.copyOfRange(key, keyOff, keyOff + g.headDim()));
        values.get(kvHead).set(slot, java.util.Arrays.copyOfRange(value, valueOff, valueOff + g.headDim()));
    }

    private void live(int kvHead, int slot) {
        if (!isLive(kvHead, slot)) throw new IllegalArgumentException("slot " + slot + " is dead");
    }

    @Override public float slotFloat(int kvHead, int slot, int lane) { return floats.get(kvHead).get(slot)[lane]; }
    @Override public void setSlotFloat(int kvHead, int slot, int lane, float value) { floats.get(kvHead).get(slot)[lane] = value; }
    @Override public int slotInt(int kvHead, int slot, int lane) { return ints.get(kvHead).get(slot)[lane]; }
    @Override public void setSlotInt(int kvHead, int slot, int lane, int value) { ints.get(kvHead).get(slot)[lane] = value; }
}
