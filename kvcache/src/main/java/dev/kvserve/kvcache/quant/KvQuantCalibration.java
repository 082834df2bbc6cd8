package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.KvGeometry;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.util.Arrays;

/**
 * KVQuant (Hooper et al., 2024) fitted to one model: per layer, per-channel key zero point and
 * half-range (from outlier-threshold percentiles of pre-RoPE keys), a nuq key codebook and a nuq value
 * codebook, both from Fisher-weighted 1-D k-means; plus the per-token codec the cache uses.
 *
 * <p>Keys, per channel {@code c} (pre-RoPE): values outside {@code [z_c − r_c, z_c + r_c]} are outliers
 * kept in binary16 in the sparse store; the rest are stored as {@code argmin_j |(x − z_c)/r_c − CK[j]|}.
 * Values, per token: the {@code ceil(p/2·D)} largest and smallest elements are outliers, the rest set
 * {@code z = (max+min)/2}, {@code r = (max−min)/2} (binary16, stored with the token), codes against CV.
 */
public final class KvQuantCalibration implements Calibration {

    /** Smallest normal binary16: the half-range given to a channel that never varies. */
    private static final float MIN_RANGE = 6.1035156e-5f;

    private final KvQuantConfig config;
    private final KvGeometry geometry;
    private final float[][] keyZero;
    private final float[][] keyRange;
    private final NuqCodebook[] keyBook;
    private final NuqCodebook[] valueBook;
    private final float[][] keyTable;
    private final float[][] valueTable;

    KvQuantCalibration(KvQuantConfig config, KvGeometry geometry, float[][] keyZero, float[][] keyRange,
                       NuqCodebook[] keyBook, NuqCodebook[] valueBook) {
        int layers = geometry.layers(), kvDim = geometry.kvDim();
        if (keyZero.length != layers || keyRange.length != layers || keyBook.length != layers || valueBook.length != layers) {
            throw new IllegalArgumentException("kvquant calibration needs state for all " + layers + " layers");
        }
        for (int l = 0; l < layers; l++) {
            if (keyZero[l].length != kvDim || keyRange[l].length != kvDim) {
                throw new IllegalArgumentException("kvquant layer " + l + ": per-channel scales must have " + kvDim + " entries");
            }
            if (keyBook[l].bits() != config.bits() || valueBook[l].bits() != config.bits()) {
                throw new IllegalArgumentException("kvquant layer " + l + ": codebooks are not " + config.bits() + "-bit");
            }
            for (int c = 0; c < kvDim; c++) {
                if (!(keyRange[l][c] > 0) || !Float.isFinite(keyZero[l][c]) || !Float.isFinite(keyRange[l][c])) {
                    throw new IllegalArgumentException("kvquant layer " + l + " channel " + c + ": bad zero/range " + keyZero[l][c] + "/" + keyRange[l][c]);
                }
            }
        }
        this.config = config;
        this.geometry = geometry;
        this.keyZero = keyZero;
        this.keyRange = keyRange;
        this.keyBook = keyBook;
        this.valueBook = valueBook;
        int levels = 1 << config.bits();
        this.keyTable = new float[layers][kvDim * levels];
        this.valueTable = new float[layers][];
        for (int l = 0; l < layers; l++) {
            float[] book = keyBook[l].decodeTable();
            for (int c = 0; c < kvDim; c++) {
                for (int j = 0; j < levels; j++) keyTable[l][c * levels + j] = keyRange[l][c] * book[j] + keyZero[l][c];
            }
            valueTable[l] = valueBook[l].decodeTable();
        }
    }

    public KvQuantConfig config() {
        return config;
    }

    @Override
    public QuantMethod method() {
        return QuantMethod.KVQUANT;
    }

    @Override
    public String spec() {
        return config.spec();
    }

    @Override
    public KvGeometry geometry() {
        return geometry;
    }

    public NuqCodebook keyCodebook(int layer) {
        return keyBook[layer];
    }

    public NuqCodebook valueCodebook(int layer) {
        return valueBook[layer];
    }

    /** Per-channel key zero points of a layer (binary16-exact). */
    public float[] keyZero(int layer) {
        return keyZero[layer].clone();
    }

    /** Per-channel key half-ranges of a layer (binary16-exact). */
    public float[] keyRange(int layer) {
        return keyRange[layer].clone();
    }


    int keyRowBytes() {
        return BitPacking.bytesFor(geometry.kvDim(), config.bits());
    }

    /** Value row: packed codes, then binary16 zero point and half-range. */
    int valueRowBytes() {
        return keyRowBytes() + 4;
    }

    @Override
    public long bytesPerToken() {
        // Codes of K and V, the value's zero and range, and per sparse store (K, V) a 32-bit pointer
        // and a 16-bit outlier count.
        return (long) geometry.layers() * (keyRowBytes() + valueRowBytes() + (config.outliers() > 0 ? 12 : 0));
    }

    @Override
    public long sharedBytes() {
        long total = 0;
        for (int l = 0; l < geometry.layers(); l++) {
            total += 4L * geometry.kvDim() + keyBook[l].storedBytes() + valueBook[l].storedBytes();
        }
        return total;
    }

    /** Collects one token's outliers while encoding. */
    static final class Outliers {
        final short[] channel;
        final short[] value;
        int count;

        Outliers(int capacity) {
            channel = new short[capacity];
            value = new short[capacity];
        }

        void add(int c, float x) {
            channel[count] = (short) c;
            value[count] = Half.bits(x);
            count++;
        }
    }

    /** Encodes a pre-RoPE key vector into a packed code row; channels beyond the thresholds go to {@code out}. */
    void encodeKey(int layer, float[] k, int off, byte[] row, int rowOff, Outliers out) {
        int bits = config.bits();
        NuqCodebook book = keyBook[layer];
        float[] z = keyZero[layer], r = keyRange[layer];
        boolean sparse = config.outliers() > 0;
        out.count = 0;
        for (int c = 0; c < geometry.kvDim(); c++) {
            float x = k[off + c];
            float u = (x - z[c]) / r[c];
            if (sparse && (u > 1f || u < -1f)) {
                out.add(c, x);
                u = Math.max(-1f, Math.min(1f, u));
            }
            BitPacking.put(row, rowOff, c, bits, book.encode(u));
        }
    }

    /** Encodes a value vector: online per-token outliers, zero point and range, packed codes. */
    void encodeValue(int layer, float[] v, int off, byte[] row, int rowOff, Outliers out, Integer[] order) {
        int n = geometry.kvDim();
        int bits = config.bits();
        boolean[] outlier = outlierMask(config, v, off, n, order);
        float min = Float.POSITIVE_INFINITY, max = Float.NEGATIVE_INFINITY;
        for (int c = 0; c < n; c++) {
            if (outlier[c]) continue;
            min = Math.min(min, v[off + c]);
            max = Math.max(max, v[off + c]);
        }
        short zBits = Half.bits((max + min) / 2);
        short rBits = Half.bits((max - min) / 2);
        float z = Half.value(zBits), r = Half.value(rBits);
        NuqCodebook book = valueBook[layer];
        out.count = 0;
        for (int c = 0; c < n; c++) {
            float x = v[off + c];
            float u = r > 0 ? (x - z) / r : 0f;
            if (outlier[c]) {
                out.add(c, x);
                u = Math.max(-1f, Math.min(1f, u));
            }
            BitPacking.put(row, rowOff, c, bits, book.encode(u));
        }
        int sOff = rowOff + keyRowBytes();
        row[sOff] = (byte) zBits;
        row[sOff + 1] = (byte) (zBits >> 8);
        row[sOff + 2] = (byte) rBits;
        row[sOff + 3] = (byte) (rBits >> 8);
    }

    float[] keyTable(int layer) {
        return keyTable[layer];
    }

    float[] valueTable(int layer) {
        return valueTable[layer];
    }

    static float valueZero(byte[] row, int valueScaleOff) {
        return Half.value((short) ((row[valueScaleOff] & 0xFF) | (row[valueScaleOff + 1] << 8)));
    }

    static float valueRange(byte[] row, int valueScaleOff) {
        return Half.value((short) ((row[valueScaleOff + 2] & 0xFF) | (row[valueScaleOff + 3] << 8)));
    }

    // ---------------------------------------------------------------------------------------------
    // Calibration

    /**
     * Fits KVQuant to calibration activations, layer by layer: key thresholds per channel at the
     * {@code 1−p/2} and {@code p/2} percentiles (numpy's linear interpolation), normalisation to
     * [−1, 1], then weighted k-means ({@code max_iter=50}, seed 0) on the non-outlier normalised values
     * with weights {@code F·s²} ({@code F} with fisherscale=false, none with fisher=false). Values are
     * normalised per token exactly as at run time. Sink positions are left out. Q-Norm, when on, sets
     * {@code normScale = σ1/σ2}, {@code normOffset = m1 − m2·normScale} from the mean/std of the
     * normalised data (1) and of its quantized version (2).
     */
    public static KvQuantCalibration fit(KvQuantConfig config, KvSamples samples, CalibrationProgress progress) {
        KvGeometry geo = samples.geometry();
        if (config.fisher() && !samples.hasFisher()) samples.keyFisher(0);
        int[] rows = samples.rowsFrom(config.sinks());
        if (rows.length == 0) {
            throw new IllegalArgumentException("kvquant calibration: no sample tokens beyond the " + config.sinks() + " sink position(s)");
        }
        int layers = geo.layers(), kvDim = geo.kvDim();
        float[][] zero = new float[layers][kvDim];
        float[][] range = new float[layers][kvDim];
        NuqCodebook[] keyBooks = new NuqCodebook[layers];
        NuqCodebook[] valueBooks = new NuqCodebook[layers];
        for (int l = 0; l < layers; l++) {
            progress.report("kvquant layer " + l + " keys", l, layers);
            float[] keys = samples.keys(l);
            float[] keyF = config.fisher() ? samples.keyFisher(l) : null;
            double t = config.upperPercentile();
            float[] column = new float[rows.length];
            for (int c = 0; c < kvDim; c++) {
                for (int i = 0; i < rows.length; i++) column[i] = keys[rows[i] * kvDim + c];
                Arrays.sort(column);
                double upper = percentile(column, t), lower = percentile(column, 1 - t);
                zero[l][c] = Half.round((float) ((upper + lower) / 2));
                float r = Half.round((float) ((upper - lower) / 2));
                range[l][c] = r > 0 ? r : MIN_RANGE;
            }
            float[] points = new float[rows.length * kvDim];
            float[] weights = keyF == null ? null : new float[points.length];
            int n = 0;
            for (int row : rows) {
                for (int c = 0; c < kvDim; c++) {
                    float u = (keys[row * kvDim + c] - zero[l][c]) / range[l][c];
                    if (u > 1f || u < -1f) continue;
                    points[n] = u;
                    if (weights != null) {
                        float s = range[l][c];
                        weights[n] = keyF[row * kvDim + c] * (config.fisherScale() ? s * s : 1f);
                    }
                    n++;
                }
            }
            keyBooks[l] = fitCodebook(config, Arrays.copyOf(points, n), weights == null ? null : Arrays.copyOf(weights, n), "key", l);

            progress.report("kvquant layer " + l + " values", l, layers);
            float[] values = samples.values(l);
            float[] valueF = config.fisher() ? samples.valueFisher(l) : null;
            n = 0;
            Integer[] order = new Integer[kvDim];
            for (int row : rows) {
                int off = row * kvDim;
                boolean[] outlier = outlierMask(config, values, off, kvDim, order);
                float min = Float.POSITIVE_INFINITY, max = Float.NEGATIVE_INFINITY;
                for (int c = 0; c < kvDim; c++) {
                    if (outlier[c]) continue;
                    min = Math.min(min, values[off + c]);
                    max = Math.max(max, values[off + c]);
                }
                float z = Half.round((max + min) / 2), r = Half.round((max - min) / 2);
                if (!(r > 0)) continue;
                for (int c = 0; c < kvDim; c++) {
                    if (outlier[c]) continue;
                    float u = (values[off + c] - z) / r;
                    if (u > 1f || u < -1f) continue;
                    points[n] = u;
                    if (weights != null) weights[n] = valueF[off + c] * (config.fisherScale() ? r * r : 1f);
                    n++;
                }
            }
            if (n == 0) throw new IllegalArgumentException("kvquant calibration: layer " + l + " values are constant in every token");
            valueBooks[l] = fitCodebook(config, Arrays.copyOf(points, n), weights == null ? null : Arrays.copyOf(weights, n), "value", l);
        }
        progress.report("kvquant", layers, layers);
        return new KvQuantCalibration(config, geo, zero, range, keyBooks, valueBooks);
    }

    /**
     * The value outliers of one token: the {@code ceil(p/2·n)} largest and smallest elements (the
     * reference's top-k/bottom-k on the CPU). Replacing them by the median, as the paper does before
     * taking min/max, leaves min/max of the remaining elements unchanged, so they are simply skipped.
     */
    static boolean[] outlierMask(KvQuantConfig config, float[] v, int off, int n, Integer[] order) {
        boolean[] mask = new boolean[n];
        int k = Math.min(config.valueOutliersPerSide(n), (n - 1) / 2);
        if (k == 0) return mask;
        for (int i = 0; i < n; i++) order[i] = i;
        Arrays.sort(order, 0, n, (a, b) -> {
            int cmp = Float.compare(v[off + a], v[off + b]);
            return cmp != 0 ? cmp : Integer.compare(a, b);
        });
        for (int i = 0; i < k; i++) {
            mask[order[i]] = true;
            mask[order[n - 1 - i]] = true;
        }
        return mask;
    }

    private static NuqCodebook fitCodebook(KvQuantConfig config, float[] points, float[] weights, String what, int layer) {
        if (points.length == 0) throw new IllegalArgumentException("kvquant calibration: layer " + layer + " has no " + what + " data to fit");
        if (weights != null) {
            double total = 0;
            for (float w : weights) total += w;
            if (!(total > 0)) {
                throw new IllegalArgumentException("kvquant calibration: the Fisher information of layer " + layer + " " + what
                        + "s is zero everywhere (no gradient reached them)");
            }
        }
        int levels = 1 << config.bits();
        WeightedKMeans.Result km = WeightedKMeans.fit(points, 1, weights, levels, WeightedKMeans.DEFAULT_MAX_ITER,
                WeightedKMeans.DEFAULT_TOL, 0L);
        float[] signposts = Half.roundAll(km.centroids());
        Arrays.sort(signposts);
        NuqCodebook book = NuqCodebook.of(signposts);
        if (!config.qNorm()) return book;
        double m1 = 0, m2 = 0;
        for (float p : points) {
            m1 += p;
            m2 += signposts[book.encode(p)];
        }
        m1 /= points.length;
        m2 /= points.length;
        double v1 = 0, v2 = 0;
        for (float p : points) {
            double a = p - m1, b = signposts[book.encode(p)] - m2;
            v1 += a * a;
            v2 += b * b;
        }
        double s1 = Math.sqrt(v1 / points.length), s2 = Math.sqrt(v2 / points.length);
        if (!(s2 > 0)) return book;
        float scale = (float) (s1 / s2);
        return book.withQNorm(scale, (float) (m1 - m2 * scale));
    }

    /** numpy.percentile with linear interpolation on ascending {@code sorted}; q in [0, 1]. */
    static double percentile(float[] sorted, double q) {
        double pos = q * (sorted.length - 1);
        int lo = (int) Math.floor(pos);
        int hi = Math.min(sorted.length - 1, lo + 1);
        double frac = pos - lo;
        return sorted[lo] + (sorted[hi] - (double) sorted[lo]) * frac;
    }

    // ---------------------------------------------------------------------------------------------
    // Serialisation

    @Override
    public void writePayload(DataOutputStream out) throws IOException {
        for (int l = 0; l < geometry.layers(); l++) {
            for (float z : keyZero[l]) out.writeFloat(z);
            for (float r : keyRange[l]) out.writeFloat(r);
            writeBook(out, keyBook[l]);
            writeBook(out, valueBook[l]);
        }
    }

    private static void writeBook(DataOutputStream out, NuqCodebook book) throws IOException {
        out.writeInt(book.size());
        for (float s : book.signposts()) out.writeFloat(s);
        out.writeFloat(book.normScale());
        out.writeFloat(book.normOffset());
    }

    static KvQuantCalibration readPayload(KvQuantConfig config, KvGeometry geo, DataInputStream in) throws IOException {
        int layers = geo.layers(), kvDim = geo.kvDim();
        float[][] zero = new float[layers][kvDim];
        float[][] range = new float[layers][kvDim];
        NuqCodebook[] kb = new NuqCodebook[layers];
        NuqCodebook[] vb = new NuqCodebook[layers];
        for (int l = 0; l < layers; l++) {
            for (int c = 0; c < kvDim; c++) zero[l][c] = in.readFloat();
            for (int c = 0; c < kvDim; c++) range[l][c] = in.readFloat();
            kb[l] = readBook(in, config.bits());
            vb[l] = readBook(in, config.bits());
        }
        return new KvQuantCalibration(config, geo, zero, range, kb, vb);
    }

    private static NuqCodebook readBook(DataInputStream in, int bits) throws IOException {
        int size = in.readInt();
        if (size != 1 << bits) throw new IOException("codebook of " + size + " entries where " + (1 << bits) + " were expected");
        float[] s = new float[size];
        for (int i = 0; i < size; i++) s[i] = in.readFloat();
        float scale = in.readFloat(), offset = in.readFloat();
        return new NuqCodebook(s, scale, offset);
    }
}
