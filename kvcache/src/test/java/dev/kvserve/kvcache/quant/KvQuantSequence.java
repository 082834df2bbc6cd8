package dev.kvserve.kvcache.quant;

/**
 * One sequence under KVQuant: sink tokens in fp16; every other token as a packed key code row, a
 * packed value code row with its binary16 zero point and range, and its outliers in two sparse
 * stores (keys, values). Attention decodes one token's head at a time through the layer's
 * per-channel lookup table ({@code r_c·CK[j] + z_c}) or the value codebook, patches outliers in, and
 * rotates keys with RoPE on the fly, as the paper's kernels do.
 */
final class KvQuantSequence extends QuantizedSequenceBase {

    private final KvQuantCalibration cal;
    private final int sinks;
    private final int bits;
    private final int levels;
    private final boolean sparse;
    private final HalfRows[] sinkK;
    private final HalfRows[] sinkV;
    private final RowStore[] keyRows;
    private final RowStore[] valueRows;
    private final SparseStore[] keySparse;
    private final SparseStore[] valueSparse;
    private final KvQuantCalibration.Outliers outliers;
    private final Integer[] order;

    KvQuantSequence(KvQuantCalibration cal) {
        super(cal.geometry());
        this.cal = cal;
        this.sinks = cal.config().sinks();
        this.bits = cal.config().bits();
        this.levels = 1 << bits;
        this.sparse = cal.config().outliers() > 0;
        int layers = geo.layers();
        sinkK = new HalfRows[layers];
        sinkV = new HalfRows[layers];
        keyRows = new RowStore[layers];
        valueRows = new RowStore[layers];
        keySparse = new SparseStore[layers];
        valueSparse = new SparseStore[layers];
        for (int l = 0; l < layers; l++) {
            sinkK[l] = new HalfRows(kvDim);
            sinkV[l] = new HalfRows(kvDim);
            keyRows[l] = new RowStore(cal.keyRowBytes());
            valueRows[l] = new RowStore(cal.valueRowBytes());
            keySparse[l] = new SparseStore();
            valueSparse[l] = new SparseStore();
        }
        outliers = new KvQuantCalibration.Outliers(kvDim);
        order = new Integer[kvDim];
    }

    @Override
    protected void appendToken(int layer, float[] k, int kOff, float[] v, int vOff, int pos) {
        if (pos < sinks) {
            sinkK[layer].add(k, kOff);
            sinkV[layer].add(v, vOff);
            return;
        }
        RowStore kr = keyRows[layer];
        int row = kr.addRow();
        cal.encodeKey(layer, k, kOff, kr.block(row), kr.offset(row), outliers);
        if (sparse) keySparse[layer].addToken(outliers.channel, outliers.value, outliers.count);
        RowStore vr = valueRows[layer];
        row = vr.addRow();
        cal.encodeValue(layer, v, vOff, vr.block(row), vr.offset(row), outliers, order);
        if (sparse) valueSparse[layer].addToken(outliers.channel, outliers.value, outliers.count);
    }

    @Override
    protected void decodeKeyHead(int layer, int t, int kvHead, float[] out) {
        int base = kvHead * headDim;
        if (t < sinks) {
            sinkK[layer].read(t, base, headDim, out, 0);
            return;
        }
        int row = t - sinks;
        RowStore rows = keyRows[layer];
        byte[] block = rows.block(row);
        int off = rows.offset(row);
        float[] table = cal.keyTable(layer);
        for (int i = 0; i < headDim; i++) {
            int c = base + i;
            out[i] = table[c * levels + BitPacking.get(block, off, c, bits)];
        }
        if (sparse) patch(keySparse[layer], row, base, out);
    }

    @Override
    protected void decodeValueHead(int layer, int t, int kvHead, float[] out) {
        int base = kvHead * headDim;
        if (t < sinks) {
            sinkV[layer].read(t, base, headDim, out, 0);
            return;
        }
        int row = t - sinks;
        RowStore rows = valueRows[layer];
        byte[] block = rows.block(row);
        int off = rows.offset(row);
        int scaleOff = off + cal.keyRowBytes();
        float z = KvQuantCalibration.valueZero(block, scaleOff);
        float r = KvQuantCalibration.valueRange(block, scaleOff);
        float[] table = cal.valueTable(layer);
        for (int i = 0; i < headDim; i++) out[i] = r * table[BitPacking.get(block, off, base + i, bits)] + z;
        if (sparse) patch(valueSparse[layer], row, base, out);
    }

    private void patch(SparseStore store, int row, int base, float[] out) {
        for (int e = store.start(row), end = store.end(row); e < end; e++) {
            int c = store.channel(e) - base;
            if (c >= 0 && c < headDim) out[c] = store.value(e);
        }
    }

    /** Outliers stored for keys (all layers). */
    long keyOutliers() {
        long n = 0;
        for (SparseStore s : keySparse) n += s.entries();
        return n;
    }

    long valueOutliers() {
        long n = 0;
        for (SparseStore s : valueSparse) n += s.entries();
        return n;
    }

    @Override
    public long bytesHeld() {
        long total = 0;
        for (int l = 0; l < geo.layers(); l++) {
            total += sinkK[l].bytes(sinkK[l].rows()) + sinkV[l].bytes(sinkV[l].rows());
            total += keyRows[l].bytes() + valueRows[l].bytes();
            if (sparse) total += keySparse[l].bytes() + valueSparse[l].bytes();
        }
        return total;
    }

    @Override
    protected void release() {
        for (int l = 0; l < geo.layers(); l++) {
            sinkK[l].clear();
            sinkV[l].clear();
            keyRows[l].clear();
            valueRows[l].clear();
            keySparse[l].clear();
            valueSparse[l].clear();
        }
    }
}
