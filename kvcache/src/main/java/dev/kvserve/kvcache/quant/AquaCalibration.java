package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.KvGeometry;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;

/**
 * AQUA-KV (Shutova et al., 2025) fitted to one model: per layer {@code l ≥ 1} a key predictor
 * {@code K̂_l = W^K_l K̃_{l−1} + b^K_l} and a value predictor {@code V̂_l = W^V_l [K̃_l ; Ṽ_{l−1}] + b^V_l}
 * (closed-form ridge, trained on the <em>reconstructed</em> inputs so that they see inference-time
 * errors), and the HIGGS quantizers for the residuals: the main one for layers ≥ 1 and a higher-precision
 * one for layer 0, which has no predictor (or fp16 for layer 0 with {@code first=fp16}).
 */
public final class AquaCalibration implements Calibration {

    private final AquaConfig config;
    private final KvGeometry geometry;
    private final HiggsQuantizer quantizer;
    private final HiggsQuantizer firstQuantizer;
    private final RidgeRegression.Fit[] keyPredictors;
    private final RidgeRegression.Fit[] valuePredictors;

    AquaCalibration(AquaConfig config, KvGeometry geometry, GaussianGrid grid, GaussianGrid firstGrid,
                    RidgeRegression.Fit[] keyPredictors, RidgeRegression.Fit[] valuePredictors) {
        int c = geometry.kvDim();
        if (grid.dim() != config.gridDim() || grid.size() != 1 << (config.bits() * config.gridDim())) {
            throw new IllegalArgumentException("aqua: grid " + grid.dim() + "x" + grid.size() + " does not match " + config.spec());
        }
        if ((config.firstBits() == 0) != (firstGrid == null)
                || (firstGrid != null && (firstGrid.dim() != AquaConfig.FIRST_GRID_DIM
                        || firstGrid.size() != 1 << (config.firstBits() * AquaConfig.FIRST_GRID_DIM)))) {
            throw new IllegalArgumentException("aqua: first-layer grid does not match " + config.spec());
        }
        if (keyPredictors.length != geometry.layers() || valuePredictors.length != geometry.layers()) {
            throw new IllegalArgumentException("aqua: predictors must be given for all " + geometry.layers() + " layers (null for layer 0)");
        }
        for (int l = 1; l < geometry.layers(); l++) {
            RidgeRegression.Fit k = keyPredictors[l], v = valuePredictors[l];
            if (k == null || v == null || k.in() != c || k.out() != c || v.in() != 2 * c || v.out() != c) {
                throw new IllegalArgumentException("aqua layer " + l + ": predictors must map " + c + "→" + c + " and " + 2 * c + "→" + c);
            }
        }
        int group = hadamardGroup(config, geometry);
        this.config = config;
        this.geometry = geometry;
        this.quantizer = new HiggsQuantizer(grid, c, group);
        this.firstQuantizer = firstGrid == null ? null : new HiggsQuantizer(firstGrid, c, group);
        this.keyPredictors = keyPredictors;
        this.valuePredictors = valuePredictors;
    }

    /**
     * The Hadamard group for this model: the requested size (reference: 1024) capped at the largest
     * power of two dividing {@code Hkv·d}, so that groups tile the whole key/value vector and may span
     * heads, as in the reference. Grid pieces must not straddle two heads (the paged cache keeps each
     * head's codes in its own blocks), so the head size must be a multiple of the grid dimension.
     */
    static int hadamardGroup(AquaConfig config, KvGeometry geometry) {
        int c = geometry.kvDim();
        int group = Math.min(Integer.highestOneBit(config.group()), c & -c);
        int need = Math.max(config.gridDim(), config.firstBits() == 0 ? 1 : AquaConfig.FIRST_GRID_DIM);
        if (group % need != 0 || geometry.headDim() % need != 0) {
            throw new IllegalArgumentException("aqua: grid dimension " + need + " must divide the Hadamard group (" + group
                    + ") and the head size (" + geometry.headDim() + ")");
        }
        return group;
    }

    public AquaConfig config() {
        return config;
    }

    @Override
    public QuantMethod method() {
        return QuantMethod.AQUA;
    }

    @Override
    public String spec() {
        return config.spec();
    }

    @Override
    public KvGeometry geometry() {
        return geometry;
    }

    /** The residual quantizer of {@code layer} (null: layer 0 kept in fp16). */
    public HiggsQuantizer quantizer(int layer) {
        return layer == 0 ? firstQuantizer : quantizer;
    }

    public RidgeRegression.Fit keyPredictor(int layer) {
        return keyPredictors[layer];
    }

    public RidgeRegression.Fit valuePredictor(int layer) {
        return valuePredictors[layer];
    }


    /** Bytes of one compressed token's K (or V) in {@code layer}. */
    int vectorBytes(int layer) {
        HiggsQuantizer q = quantizer(layer);
        return q == null ? 2 * geometry.kvDim() : q.bytesPerVector();
    }

    @Override
    public long bytesPerToken() {
        long total = 0;
        for (int l = 0; l < geometry.layers(); l++) total += 2L * vectorBytes(l);
        return total;
    }

    /** Predictor parameters as held (float32) plus the grids. */
    @Override
    public long sharedBytes() {
        long c = geometry.kvDim();
        long params = (geometry.layers() - 1) * ((c * c + c) + (2 * c * c + c));
        long grids = 4L * quantizer.grid().points().length + (firstQuantizer == null ? 0 : 4L * firstQuantizer.grid().points().length);
        return 4 * params + grids;
    }

    /** Prediction of layer {@code l}'s keys from the previous layer's reconstructed keys (rows × kvDim). */
    public float[] predictKeys(int layer, float[] prevKeys, int rows) {
        return applyRows(keyPredictors[layer], prevKeys, null, rows);
    }

    /** Prediction of layer {@code l}'s values from its reconstructed keys and the previous layer's values. */
    public float[] predictValues(int layer, float[] keys, float[] prevValues, int rows) {
        return applyRows(valuePredictors[layer], keys, prevValues, rows);
    }

    private float[] applyRows(RidgeRegression.Fit fit, float[] a, float[] b, int rows) {
        int c = geometry.kvDim();
        float[] out = new float[rows * c];
        float[] x = new float[fit.in()];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(a, r * c, x, 0, c);
            if (b != null) System.arraycopy(b, r * c, x, c, c);
            fit.apply(x, 0, out, r * c);
        }
        return out;
    }

    // ---------------------------------------------------------------------------------------------
    // Calibration

    /**
     * One-shot, layer by layer, as {@code train_predictors.py}: layer 0 is quantized directly (4-bit
     * grid by default); for each later layer fit the key predictor on the previous layer's
     * reconstructed keys, quantize the key residual to get this layer's reconstructed keys, then fit the
     * value predictor on [reconstructed keys ; previous reconstructed values] and quantize the value
     * residual. All sample tokens are used (the reference does not leave out the prefix either).
     * Progress reports carry each predictor's relative MSE as "equivalent bits" −log4(relMSE).
     */
    public static AquaCalibration fit(AquaConfig config, KvSamples samples, CalibrationProgress progress) {
        KvGeometry geo = samples.geometry();
        int layers = geo.layers(), c = geo.kvDim(), n = samples.rows();
        GaussianGrid grid = GaussianGrid.standard(config.gridDim(), 1 << (config.bits() * config.gridDim()));
        GaussianGrid firstGrid = config.firstBits() == 0 ? null
                : GaussianGrid.standard(AquaConfig.FIRST_GRID_DIM, 1 << (config.firstBits() * AquaConfig.FIRST_GRID_DIM));
        int group = hadamardGroup(config, geo);
        HiggsQuantizer main = new HiggsQuantizer(grid, c, group);
        HiggsQuantizer first = firstGrid == null ? null : new HiggsQuantizer(firstGrid, c, group);
        RidgeRegression.Fit[] kp = new RidgeRegression.Fit[layers];
        RidgeRegression.Fit[] vp = new RidgeRegression.Fit[layers];

        progress.report("aqua layer 0", 0, layers);
        float[] prevK = reconstruct(first, samples.keys(0), null, n, c);
        float[] prevV = reconstruct(first, samples.values(0), null, n, c);
        for (int l = 1; l < layers; l++) {
            float[] keys = samples.keys(l), values = samples.values(l);
            kp[l] = RidgeRegression.fit(prevK, c, keys, c, n, config.ridge());
            double keyMse = RidgeRegression.relativeMse(kp[l], prevK, keys, n);
            float[] predK = applyAll(kp[l], prevK, n, c);
            float[] recK = reconstruct(main, keys, predK, n, c);
            float[] vin = concat(recK, prevV, n, c);
            vp[l] = RidgeRegression.fit(vin, 2 * c, values, c, n, config.ridge());
            double valueMse = RidgeRegression.relativeMse(vp[l], vin, values, n);
            float[] predV = applyAll(vp[l], vin, n, 2 * c);
            float[] recV = reconstruct(main, values, predV, n, c);
            progress.report(String.format(java.util.Locale.ROOT,
                    "aqua layer %d: key predictor relMSE %.4f (%.2f equiv. bits), value predictor relMSE %.4f (%.2f equiv. bits)",
                    l, keyMse, -Math.log(keyMse) / Math.log(4), valueMse, -Math.log(valueMse) / Math.log(4)), l, layers);
            prevK = recK;
            prevV = recV;
        }
        progress.report("aqua", layers, layers);
        return new AquaCalibration(config, geo, grid, firstGrid, kp, vp);
    }

    private static float[] applyAll(RidgeRegression.Fit fit, float[] x, int n, int in) {
        float[] out = new float[n * fit.out()];
        for (int r = 0; r < n; r++) fit.apply(x, r * in, out, r * fit.out());
        return out;
    }

    private static float[] concat(float[] a, float[] b, int n, int c) {
        float[] out = new float[n * 2 * c];
        for (int r = 0; r < n; r++) {
            System.arraycopy(a, r * c, out, r * 2 * c, c);
            System.arraycopy(b, r * c, out, r * 2 * c + c, c);
        }
        return out;
    }

    /** prediction + dequant(quant(target − prediction)); a null quantizer keeps the target in fp16. */
    private static float[] reconstruct(HiggsQuantizer q, float[] target, float[] prediction, int n, int c) {
        float[] out = new float[n * c];
        if (q == null) {
            for (int i = 0; i < out.length; i++) out[i] = Half.round(target[i]);
            return out;
        }
        float[] residual = new float[c];
        for (int r = 0; r < n; r++) {
            for (int i = 0; i < c; i++) residual[i] = target[r * c + i] - (prediction == null ? 0f : prediction[r * c + i]);
            q.roundTrip(residual, 0, out, r * c);
            if (prediction != null) for (int i = 0; i < c; i++) out[r * c + i] += prediction[r * c + i];
        }
        return out;
    }

    // ---------------------------------------------------------------------------------------------
    // Serialisation

    @Override
    public void writePayload(DataOutputStream out) throws IOException {
        writeGrid(out, quantizer.grid());
        if (firstQuantizer != null) writeGrid(out, firstQuantizer.grid());
        for (int l = 1; l < geometry.layers(); l++) {
            writeFit(out, keyPredictors[l]);
            writeFit(out, valuePredictors[l]);
        }
    }

    private static void writeGrid(DataOutputStream out, GaussianGrid g) throws IOException {
        out.writeInt(g.dim());
        out.writeInt(g.size());
        for (float p : g.points()) out.writeFloat(p);
    }

    private static GaussianGrid readGrid(DataInputStream in) throws IOException {
        int dim = in.readInt(), size = in.readInt();
        if (dim < 1 || dim > 8 || size < 2 || size > 1 << 16) throw new IOException("bad grid shape " + dim + "x" + size);
        float[] p = new float[dim * size];
        for (int i = 0; i < p.length; i++) p[i] = in.readFloat();
        return new GaussianGrid(dim, size, p);
    }

    private static void writeFit(DataOutputStream out, RidgeRegression.Fit f) throws IOException {
        out.writeInt(f.in());
        out.writeInt(f.out());
        for (float w : f.weight()) out.writeFloat(w);
        for (float b : f.bias()) out.writeFloat(b);
    }

    private static RidgeRegression.Fit readFit(DataInputStream in, int expectIn, int expectOut) throws IOException {
        int i = in.readInt(), o = in.readInt();
        if (i != expectIn || o != expectOut) throw new IOException("predictor " + i + "→" + o + " where " + expectIn + "→" + expectOut + " was expected");
        float[] w = new float[i * o];
        for (int k = 0; k < w.length; k++) w[k] = in.readFloat();
        float[] b = new float[o];
        for (int k = 0; k < o; k++) b[k] = in.readFloat();
        return new RidgeRegression.Fit(i, o, w, b);
    }

    static AquaCalibration readPayload(AquaConfig config, KvGeometry geo, DataInputStream in) throws IOException {
        GaussianGrid grid = readGrid(in);
        GaussianGrid first = config.firstBits() == 0 ? null : readGrid(in);
        int c = geo.kvDim();
        RidgeRegression.Fit[] kp = new RidgeRegression.Fit[geo.layers()];
        RidgeRegression.Fit[] vp = new RidgeRegression.Fit[geo.layers()];
        for (int l = 1; l < geo.layers(); l++) {
            kp[l] = readFit(in, c, c);
            vp[l] = readFit(in, 2 * c, c);
        }
        return new AquaCalibration(config, geo, grid, first, kp, vp);
    }
}
