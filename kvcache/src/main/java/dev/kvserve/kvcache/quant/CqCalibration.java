package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.RopeTable;
import dev.kvserve.kvcache.KvGeometry;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.util.stream.IntStream;

/**
 * Coupled Quantization (Zhang et al., 2024) fitted to one model: for every layer, separately for keys
 * and values, and for every group of {@code c} contiguous channels of the {@code Hkv·d} vector, a
 * codebook of {@code 2^(c·bits)} c-dimensional centroids (binary16) learned by k-means++/Lloyd,
 * weighted by the group's summed Fisher information when {@code fisher=true}. A token's group is
 * stored as the index of its nearest centroid.
 */
public final class CqCalibration implements Calibration {

    private final CqConfig config;
    private final KvGeometry geometry;
    private final int groups;
    private final int centroids;
    private final float[][] keyBooks;
    private final float[][] valueBooks;
    private final float[][] keyNorms;
    private final float[][] valueNorms;

    CqCalibration(CqConfig config, KvGeometry geometry, float[][] keyBooks, float[][] valueBooks) {
        checkShape(config, geometry);
        this.config = config;
        this.geometry = geometry;
        this.groups = geometry.kvDim() / config.channels();
        this.centroids = config.centroids();
        int per = groups * centroids * config.channels();
        if (keyBooks.length != geometry.layers() || valueBooks.length != geometry.layers()) {
            throw new IllegalArgumentException("cq calibration needs codebooks for all " + geometry.layers() + " layers");
        }
        for (int l = 0; l < geometry.layers(); l++) {
            if (keyBooks[l].length != per || valueBooks[l].length != per) {
                throw new IllegalArgumentException("cq layer " + l + ": codebooks must hold " + per + " values");
            }
            for (float x : keyBooks[l]) if (!Float.isFinite(x)) throw new IllegalArgumentException("cq layer " + l + ": non-finite key centroid");
            for (float x : valueBooks[l]) if (!Float.isFinite(x)) throw new IllegalArgumentException("cq layer " + l + ": non-finite value centroid");
        }
        this.keyBooks = keyBooks;
        this.valueBooks = valueBooks;
        this.keyNorms = norms(keyBooks);
        this.valueNorms = norms(valueBooks);
    }

    private static void checkShape(CqConfig config, KvGeometry geometry) {
        if (geometry.headDim() % config.channels() != 0) {
            throw new IllegalArgumentException("cq: c=" + config.channels() + " must divide the head size " + geometry.headDim()
                    + " so that no channel group spans two heads");
        }
        if (config.postRope() && config.channels() % 2 != 0 && geometry.rope().dims() > 0) {
            throw new IllegalArgumentException("cq: rope=post needs an even c");
        }
    }

    private float[][] norms(float[][] books) {
        int c = config.channels();
        float[][] out = new float[books.length][groups * centroids];
        for (int l = 0; l < books.length; l++) {
            for (int j = 0; j < groups * centroids; j++) {
                float s = 0;
                for (int i = 0; i < c; i++) s += books[l][j * c + i] * books[l][j * c + i];
                out[l][j] = s;
            }
        }
        return out;
    }

    public CqConfig config() {
        return config;
    }

    @Override
    public QuantMethod method() {
        return QuantMethod.CQ;
    }

    @Override
    public String spec() {
        return config.spec();
    }

    @Override
    public KvGeometry geometry() {
        return geometry;
    }

    public int groups() {
        return groups;
    }

    /** Centroid {@code j} of key group {@code g} in layer {@code layer}. */
    public float[] keyCentroid(int layer, int g, int j) {
        int c = config.channels();
        return java.util.Arrays.copyOfRange(keyBooks[layer], (g * centroids + j) * c, (g * centroids + j + 1) * c);
    }

    float[] keyBook(int layer) {
        return keyBooks[layer];
    }

    float[] valueBook(int layer) {
        return valueBooks[layer];
    }


    int rowBytes() {
        return BitPacking.bytesFor(groups, config.codeBits());
    }

    @Override
    public long bytesPerToken() {
        return 2L * geometry.layers() * rowBytes();
    }

    @Override
    public long sharedBytes() {
        return 2L * geometry.layers() * groups * centroids * config.channels() * 2L;
    }

    /** Index of the centroid of group {@code g} nearest to {@code x[off..off+c)}: argmin {@code |C|² − 2x·C}. */
    int nearest(int layer, boolean keys, int g, float[] x, int off) {
        float[] book = keys ? keyBooks[layer] : valueBooks[layer];
        float[] norm = keys ? keyNorms[layer] : valueNorms[layer];
        int c = config.channels();
        int best = 0;
        float bestD = Float.POSITIVE_INFINITY;
        for (int j = 0; j < centroids; j++) {
            int co = (g * centroids + j) * c;
            float dot = 0;
            for (int i = 0; i < c; i++) dot += x[off + i] * book[co + i];
            float d = norm[g * centroids + j] - 2 * dot;
            if (d < bestD) {
                bestD = d;
                best = j;
            }
        }
        return best;
    }

    /** Codes of {@code x[off..off+kvDim)}: nearest centroid per group, computed as argmin {@code |C|² − 2x·C}. */
    void encode(int layer, boolean keys, float[] x, int off, byte[] row, int rowOff) {
        float[] book = keys ? keyBooks[layer] : valueBooks[layer];
        float[] norm = keys ? keyNorms[layer] : valueNorms[layer];
        int c = config.channels();
        int bits = config.codeBits();
        for (int g = 0; g < groups; g++) {
            int xo = off + g * c;
            int best = 0;
            float bestD = Float.POSITIVE_INFINITY;
            for (int j = 0; j < centroids; j++) {
                int co = (g * centroids + j) * c;
                float dot = 0;
                for (int i = 0; i < c; i++) dot += x[xo + i] * book[co + i];
                float d = norm[g * centroids + j] - 2 * dot;
                if (d < bestD) {
                    bestD = d;
                    best = j;
                }
            }
            BitPacking.put(row, rowOff, g, bits, best);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Calibration

    /**
     * Learns the centroids of every (layer, K/V, group) by weighted k-means (greedy k-means++ init,
     * at most 50 Lloyd iterations, seed 0) over the calibration tokens past the sinks. With
     * {@code rope=post} the keys (and their gradients, before squaring) are rotated to their positions
     * first. Groups are fitted in parallel; the result does not depend on the thread count.
     */
    public static CqCalibration fit(CqConfig config, KvSamples samples, CalibrationProgress progress) {
        KvGeometry geo = samples.geometry();
        checkShape(config, geo);
        if (config.fisher() && !samples.hasFisher()) samples.keyFisher(0);
        int[] rows = samples.rowsFrom(config.sinks());
        if (rows.length == 0) throw new IllegalArgumentException("cq calibration: no sample tokens beyond the " + config.sinks() + " sink position(s)");
        int layers = geo.layers(), kvDim = geo.kvDim(), c = config.channels();
        int groups = kvDim / c, k = config.centroids();
        RopeTable rope = new RopeTable(geo.rope(), geo.headDim());
        float[][] keyBooks = new float[layers][];
        float[][] valueBooks = new float[layers][];
        for (int l = 0; l < layers; l++) {
            progress.report("cq layer " + l, l, layers);
            float[] keys = gather(samples.keys(l), rows, kvDim);
            float[] keyF = null, valueF = null;
            if (config.fisher()) {
                keyF = gather(samples.keyGradient(l), rows, kvDim);
                valueF = gather(samples.valueFisher(l), rows, kvDim);
            }
            if (config.postRope()) {
                for (int i = 0; i < rows.length; i++) {
                    int pos = samples.position(rows[i]);
                    for (int h = 0; h < geo.kvHeads(); h++) rope.rotate(keys, i * kvDim + h * geo.headDim(), pos);
                    if (keyF != null) for (int h = 0; h < geo.kvHeads(); h++) rope.rotate(keyF, i * kvDim + h * geo.headDim(), pos);
                }
            }
            if (keyF != null) for (int i = 0; i < keyF.length; i++) keyF[i] *= keyF[i];
            keyBooks[l] = fitGroups(keys, keyF, rows.length, kvDim, c, groups, k, "key", l);
            valueBooks[l] = fitGroups(gather(samples.values(l), rows, kvDim), valueF, rows.length, kvDim, c, groups, k, "value", l);
        }
        progress.report("cq", layers, layers);
        return new CqCalibration(config, geo, keyBooks, valueBooks);
    }

    private static float[] gather(float[] src, int[] rows, int width) {
        float[] out = new float[rows.length * width];
        for (int i = 0; i < rows.length; i++) System.arraycopy(src, rows[i] * width, out, i * width, width);
        return out;
    }

    private static float[] fitGroups(float[] data, float[] fisher, int n, int kvDim, int c, int groups, int k, String what, int layer) {
        float[] book = new float[groups * k * c];
        IntStream.range(0, groups).parallel().forEach(g -> {
            float[] points = new float[n * c];
            float[] weights = fisher == null ? null : new float[n];
            for (int i = 0; i < n; i++) {
                System.arraycopy(data, i * kvDim + g * c, points, i * c, c);
                if (weights != null) {
                    float w = 0;
                    for (int j = 0; j < c; j++) w += fisher[i * kvDim + g * c + j];
                    weights[i] = w;
                }
            }
            if (weights != null) {
                double total = 0;
                for (float w : weights) total += w;
                if (!(total > 0)) {
                    throw new IllegalArgumentException("cq calibration: the Fisher information of layer " + layer + " " + what
                            + " group " + g + " is zero everywhere");
                }
            }
            WeightedKMeans.Result r = WeightedKMeans.fit(points, c, weights, k, WeightedKMeans.DEFAULT_MAX_ITER,
                    WeightedKMeans.DEFAULT_TOL, 0L);
            float[] cent = Half.roundAll(r.centroids());
            System.arraycopy(cent, 0, book, g * k * c, k * c);
        });
        return book;
    }

    // ---------------------------------------------------------------------------------------------
    // Serialisation

    @Override
    public void writePayload(DataOutputStream out) throws IOException {
        for (int l = 0; l < geometry.layers(); l++) {
            for (float x : keyBooks[l]) out.writeShort(Half.bits(x));
            for (float x : valueBooks[l]) out.writeShort(Half.bits(x));
        }
    }

    static CqCalibration readPayload(CqConfig config, KvGeometry geo, DataInputStream in) throws IOException {
        checkShape(config, geo);
        int per = geo.kvDim() / config.channels() * config.centroids() * config.channels();
        float[][] kb = new float[geo.layers()][per];
        float[][] vb = new float[geo.layers()][per];
        for (int l = 0; l < geo.layers(); l++) {
            for (int i = 0; i < per; i++) kb[l][i] = Half.value(in.readShort());
            for (int i = 0; i < per; i++) vb[l][i] = Half.value(in.readShort());
        }
        return new CqCalibration(config, geo, kb, vb);
    }
}
