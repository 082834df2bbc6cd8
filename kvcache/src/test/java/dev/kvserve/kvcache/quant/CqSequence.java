package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.RopeTable;
import java.util.Arrays;

/**
 * One sequence under Coupled Quantization: sink tokens and the most recent {@code window} tokens in
 * fp16, every other token as one {@code c·bits}-bit centroid index per channel group for keys and for
 * values.
 *
 * <p>Attention reads codes through tables built once per query: values always — the softmax weights
 * are summed per (group, centroid) and the output is {@code Σ_j weight_j · C_j}; keys too when they
 * are stored post-RoPE ({@code rope=post}): {@code T[group][j] = q_group · C_j}, a token's score is the
 * sum of its groups' table entries. Pre-RoPE keys (the default) pair channels that rotate with the
 * token's position, so there each token's centroids are gathered, rotated and dotted.
 */
final class CqSequence extends QuantizedSequenceBase {

    private final CqCalibration cal;
    private final int c;
    private final int bits;
    private final int centroids;
    private final int groupsPerHead;
    private final int sinks;
    private final int window;
    private final boolean postRope;
    private final HalfRows[] sinkK;
    private final HalfRows[] sinkV;
    /** Non-sink tokens not yet coded (the window), and in front of them nothing: index = t − sinks − coded. */
    private final HalfRows[] recentK;
    private final HalfRows[] recentV;
    private final RowStore[] keyRows;
    private final RowStore[] valueRows;
    private final float[] rotated;

    CqSequence(CqCalibration cal) {
        super(cal.geometry());
        CqConfig cfg = cal.config();
        this.cal = cal;
        this.c = cfg.channels();
        this.bits = cfg.codeBits();
        this.centroids = cfg.centroids();
        this.groupsPerHead = headDim / c;
        this.sinks = cfg.sinks();
        this.window = cfg.window();
        this.postRope = cfg.postRope();
        int layers = geo.layers();
        sinkK = new HalfRows[layers];
        sinkV = new HalfRows[layers];
        recentK = new HalfRows[layers];
        recentV = new HalfRows[layers];
        keyRows = new RowStore[layers];
        valueRows = new RowStore[layers];
        for (int l = 0; l < layers; l++) {
            sinkK[l] = new HalfRows(kvDim);
            sinkV[l] = new HalfRows(kvDim);
            recentK[l] = new HalfRows(kvDim);
            recentV[l] = new HalfRows(kvDim);
            keyRows[l] = new RowStore(cal.rowBytes());
            valueRows[l] = new RowStore(cal.rowBytes());
        }
        rotated = new float[kvDim];
    }

    private int coded(int layer) {
        return keyRows[layer].rows();
    }

    @Override
    protected void appendToken(int layer, float[] k, int kOff, float[] v, int vOff, int pos) {
        if (pos < sinks) {
            sinkK[layer].add(k, kOff);
            sinkV[layer].add(v, vOff);
            return;
        }
        if (window == 0) {
            encode(layer, k, kOff, v, vOff, pos);
            return;
        }
        recentK[layer].add(k, kOff);
        recentV[layer].add(v, vOff);
        // The token that falls out of the window is coded from its fp16 copy.
        int uncoded = recentK[layer].rows() - coded(layer);
        if (uncoded > window) {
            int idx = coded(layer);
            float[] kk = new float[kvDim], vv = new float[kvDim];
            recentK[layer].read(idx, 0, kvDim, kk, 0);
            recentV[layer].read(idx, 0, kvDim, vv, 0);
            encode(layer, kk, 0, vv, 0, sinks + idx);
            recentK[layer].dropBefore(idx + 1);
            recentV[layer].dropBefore(idx + 1);
        }
    }

    private void encode(int layer, float[] k, int kOff, float[] v, int vOff, int pos) {
        float[] key = k;
        int keyOff = kOff;
        if (postRope) {
            System.arraycopy(k, kOff, rotated, 0, kvDim);
            for (int h = 0; h < geo.kvHeads(); h++) rope.rotate(rotated, h * headDim, pos);
            key = rotated;
            keyOff = 0;
        }
        RowStore kr = keyRows[layer];
        int row = kr.addRow();
        cal.encode(layer, true, key, keyOff, kr.block(row), kr.offset(row));
        RowStore vr = valueRows[layer];
        row = vr.addRow();
        cal.encode(layer, false, v, vOff, vr.block(row), vr.offset(row));
    }

    /** Where token t lives: -1 sink, 0 coded, 1 fp16 window. */
    private int kind(int layer, int t) {
        if (t < sinks) return -1;
        return t - sinks < coded(layer) ? 0 : 1;
    }

    private void gather(float[] book, RowStore rows, int row, int kvHead, float[] out) {
        byte[] block = rows.block(row);
        int off = rows.offset(row);
        for (int gl = 0; gl < groupsPerHead; gl++) {
            int g = kvHead * groupsPerHead + gl;
            int code = BitPacking.get(block, off, g, bits);
            System.arraycopy(book, (g * centroids + code) * c, out, gl * c, c);
        }
    }

    @Override
    protected void decodeKeyHead(int layer, int t, int kvHead, float[] out) {
        switch (kind(layer, t)) {
            case -1 -> sinkK[layer].read(t, kvHead * headDim, headDim, out, 0);
            case 0 -> {
                gather(cal.keyBook(layer), keyRows[layer], t - sinks, kvHead, out);
                if (postRope) rope.rotate(out, 0, -t);
            }
            default -> recentK[layer].read(t - sinks, kvHead * headDim, headDim, out, 0);
        }
    }

    @Override
    protected void decodeValueHead(int layer, int t, int kvHead, float[] out) {
        switch (kind(layer, t)) {
            case -1 -> sinkV[layer].read(t, kvHead * headDim, headDim, out, 0);
            case 0 -> gather(cal.valueBook(layer), valueRows[layer], t - sinks, kvHead, out);
            default -> recentV[layer].read(t - sinks, kvHead * headDim, headDim, out, 0);
        }
    }

    @Override
    protected void scoreKeys(int layer, int kvHead, float[] q, int qOff, int visible, float[] scores) {
        if (!postRope) {
            super.scoreKeys(layer, kvHead, q, qOff, visible, scores);
            return;
        }
        float[] book = cal.keyBook(layer);
        int codedEnd = Math.min(visible, sinks + coded(layer));
        // Per query head: table[gl][j] = q_gl · C_{g,j}, built once for all tokens of this query.
        float[] table = new float[group * groupsPerHead * centroids];
        for (int jq = 0; jq < group; jq++) {
            int qo = qOff + jq * headDim;
            for (int gl = 0; gl < groupsPerHead; gl++) {
                int g = kvHead * groupsPerHead + gl;
                int tb = (jq * groupsPerHead + gl) * centroids;
                for (int j = 0; j < centroids; j++) {
                    int co = (g * centroids + j) * c;
                    float s = 0;
                    for (int i = 0; i < c; i++) s += q[qo + gl * c + i] * book[co + i];
                    table[tb + j] = s;
                }
            }
        }
        RowStore rows = keyRows[layer];
        for (int t = sinks; t < codedEnd; t++) {
            int row = t - sinks;
            byte[] block = rows.block(row);
            int off = rows.offset(row);
            for (int jq = 0; jq < group; jq++) scores[jq * visible + t] = 0;
            for (int gl = 0; gl < groupsPerHead; gl++) {
                int code = BitPacking.get(block, off, kvHead * groupsPerHead + gl, bits);
                for (int jq = 0; jq < group; jq++) scores[jq * visible + t] += table[(jq * groupsPerHead + gl) * centroids + code];
            }
        }
        float[] k = new float[headDim];
        for (int t = 0; t < visible; t++) {
            if (t >= sinks && t < codedEnd) continue;
            decodeKeyHead(layer, t, kvHead, k);
            rope.rotate(k, 0, t);
            for (int jq = 0; jq < group; jq++) {
                float s = 0;
                for (int i = 0; i < headDim; i++) s += q[qOff + jq * headDim + i] * k[i];
                scores[jq * visible + t] = s;
            }
        }
    }

    @Override
    protected void mixValues(int layer, int kvHead, float[] probs, int visible, float[] out, int outOff) {
        float[] book = cal.valueBook(layer);
        int codedEnd = Math.min(visible, sinks + coded(layer));
        // Softmax mass per (query head, group, centroid), then one pass over the centroids.
        float[] mass = new float[group * groupsPerHead * centroids];
        RowStore rows = valueRows[layer];
        for (int t = sinks; t < codedEnd; t++) {
            int row = t - sinks;
            byte[] block = rows.block(row);
            int off = rows.offset(row);
            for (int gl = 0; gl < groupsPerHead; gl++) {
                int code = BitPacking.get(block, off, kvHead * groupsPerHead + gl, bits);
                for (int jq = 0; jq < group; jq++) mass[(jq * groupsPerHead + gl) * centroids + code] += probs[jq * visible + t];
            }
        }
        for (int jq = 0; jq < group; jq++) {
            for (int gl = 0; gl < groupsPerHead; gl++) {
                int g = kvHead * groupsPerHead + gl;
                int mb = (jq * groupsPerHead + gl) * centroids;
                int oo = outOff + jq * headDim + gl * c;
                for (int j = 0; j < centroids; j++) {
                    float m = mass[mb + j];
                    if (m == 0f) continue;
                    int co = (g * centroids + j) * c;
                    for (int i = 0; i < c; i++) out[oo + i] += m * book[co + i];
                }
            }
        }
        float[] v = new float[headDim];
        for (int t = 0; t < visible; t++) {
            if (t >= sinks && t < codedEnd) continue;
            decodeValueHead(layer, t, kvHead, v);
            for (int jq = 0; jq < group; jq++) {
                float p = probs[jq * visible + t];
                int oo = outOff + jq * headDim;
                for (int i = 0; i < headDim; i++) out[oo + i] += p * v[i];
            }
        }
    }

    @Override
    public long bytesHeld() {
        long total = 0;
        for (int l = 0; l < geo.layers(); l++) {
            long windowTokens = window == 0 ? 0 : recentK[l].rows() - coded(l);
            long fp16Tokens = sinkK[l].rows() + windowTokens;
            total += fp16Tokens * kvDim * 4L + keyRows[l].bytes() + valueRows[l].bytes();
        }
        return total;
    }

    @Override
    protected void release() {
        for (int l = 0; l < geo.layers(); l++) {
            sinkK[l].clear();
            sinkV[l].clear();
            recentK[l].clear();
            recentV[l].clear();
            keyRows[l].clear();
            valueRows[l].clear();
        }
        Arrays.fill(rotated, 0f);
    }
}
