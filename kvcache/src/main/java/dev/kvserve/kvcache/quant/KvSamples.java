package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.KvGeometry;
import java.util.ArrayList;
import java.util.List;

/**
 * Calibration activations: for every layer, the pre-RoPE keys and the values the model produced on a
 * set of calibration sequences, optionally with the gradient of the LM loss with respect to each of
 * those elements. The diagonal Fisher information of an element is the square of its gradient; the
 * signed gradient is kept because methods that quantize post-RoPE keys (CQ with rope=post) need the
 * gradient rotated before it is squared. Rows are tokens: all sequences back to back, the same rows in
 * every layer, each with its position inside its own sequence (for sink exclusion and RoPE).
 *
 * <p>Arrays handed out are the backing arrays; calibration only reads them.
 */
public final class KvSamples {

    private final KvGeometry geometry;
    private final int rows;
    private final int[] positions;
    private final float[][] keys;
    private final float[][] values;
    private final float[][] keyGrad;
    private final float[][] valueGrad;
    private final float[][] keyFisher;
    private final float[][] valueFisher;

    private KvSamples(KvGeometry geometry, int rows, int[] positions, float[][] keys, float[][] values,
                      float[][] keyGrad, float[][] valueGrad) {
        this.geometry = geometry;
        this.rows = rows;
        this.positions = positions;
        this.keys = keys;
        this.values = values;
        this.keyGrad = keyGrad;
        this.valueGrad = valueGrad;
        this.keyFisher = keyGrad == null ? null : new float[keyGrad.length][];
        this.valueFisher = valueGrad == null ? null : new float[valueGrad.length][];
    }

    public static Builder builder(KvGeometry geometry) {
        return new Builder(geometry);
    }

    public KvGeometry geometry() {
        return geometry;
    }

    public int rows() {
        return rows;
    }

    public int kvDim() {
        return geometry.kvDim();
    }

    public int position(int row) {
        return positions[row];
    }

    /** Pre-RoPE keys of a layer, {@code rows × kvDim}. */
    public float[] keys(int layer) {
        return keys[layer];
    }

    public float[] values(int layer) {
        return values[layer];
    }

    public boolean hasFisher() {
        return keyGrad != null;
    }

    /** dLoss/dK (pre-RoPE) of a layer, {@code rows × kvDim}; throws if no gradients were collected. */
    public float[] keyGradient(int layer) {
        requireFisher();
        return keyGrad[layer];
    }

    public float[] valueGradient(int layer) {
        requireFisher();
        return valueGrad[layer];
    }

    /** Diagonal Fisher information of the pre-RoPE keys of a layer: squared gradients. */
    public synchronized float[] keyFisher(int layer) {
        requireFisher();
        if (keyFisher[layer] == null) keyFisher[layer] = squares(keyGrad[layer]);
        return keyFisher[layer];
    }

    public synchronized float[] valueFisher(int layer) {
        requireFisher();
        if (valueFisher[layer] == null) valueFisher[layer] = squares(valueGrad[layer]);
        return valueFisher[layer];
    }

    private static float[] squares(float[] g) {
        float[] f = new float[g.length];
        for (int i = 0; i < g.length; i++) f[i] = g[i] * g[i];
        return f;
    }

    private void requireFisher() {
        if (keyGrad == null) {
            throw new IllegalStateException("these calibration samples carry no Fisher information: collect them with "
                    + "gradients, or calibrate with fisher=false (the unweighted ablation)");
        }
    }

    /** Rows whose position is at least {@code firstPosition} (sinks excluded from calibration). */
    public int[] rowsFrom(int firstPosition) {
        int n = 0;
        for (int p : positions) if (p >= firstPosition) n++;
        int[] out = new int[n];
        int j = 0;
        for (int r = 0; r < rows; r++) if (positions[r] >= firstPosition) out[j++] = r;
        return out;
    }

    /** Accumulates sequences; every sequence gives all layers, with or without gradients (the same for all). */
    public static final class Builder {
        private final KvGeometry geometry;
        private final List<float[][]> keys = new ArrayList<>();
        private final List<float[][]> values = new ArrayList<>();
        private final List<float[][]> keyGrad = new ArrayList<>();
        private final List<float[][]> valueGrad = new ArrayList<>();
        private final List<Integer> lengths = new ArrayList<>();
        private Boolean withFisher;

        private Builder(KvGeometry geometry) {
            this.geometry = geometry;
        }

        /**
         * Adds one sequence of {@code T} tokens at positions 0..T-1: each argument is {@code [layer][T·kvDim]};
         * the gradient arguments (dLoss/dK pre-RoPE, dLoss/dV) are both null or both given.
         */
        public Builder addSequence(float[][] seqKeys, float[][] seqValues, float[][] seqKeyGrad, float[][] seqValueGrad) {
            int layers = geometry.layers(), kvDim = geometry.kvDim();
            if (seqKeys.length != layers || seqValues.length != layers
                    || (seqKeyGrad != null && seqKeyGrad.length != layers) || (seqValueGrad != null && seqValueGrad.length != layers)) {
                throw new IllegalArgumentException("a calibration sequence needs keys and values for all " + layers + " layers");
            }
            boolean fisher = seqKeyGrad != null;
            if (fisher != (seqValueGrad != null)) throw new IllegalArgumentException("key and value gradients must both be given or both be null");
            if (withFisher != null && withFisher != fisher) {
                throw new IllegalArgumentException("every calibration sequence must come with gradients, or none");
            }
            withFisher = fisher;
            int len = seqKeys[0].length;
            if (len == 0 || len % kvDim != 0) {
                throw new IllegalArgumentException("keys of a sequence hold " + len + " values, not a positive multiple of kvDim " + kvDim);
            }
            for (int l = 0; l < layers; l++) {
                check(seqKeys[l], len, "keys", l);
                check(seqValues[l], len, "values", l);
                if (fisher) {
                    check(seqKeyGrad[l], len, "key gradients", l);
                    check(seqValueGrad[l], len, "value gradients", l);
                }
            }
            keys.add(seqKeys);
            values.add(seqValues);
            if (fisher) {
                keyGrad.add(seqKeyGrad);
                valueGrad.add(seqValueGrad);
            }
            lengths.add(len / kvDim);
            return this;
        }

        private static void check(float[] a, int len, String what, int layer) {
            if (a == null || a.length != len) {
                throw new IllegalArgumentException(what + " of layer " + layer + " hold " + (a == null ? "nothing" : a.length + " values")
                        + ", expected " + len);
            }
            for (float x : a) {
                if (!Float.isFinite(x)) throw new IllegalArgumentException(what + " of layer " + layer + " contain a non-finite value");
            }
        }

        public KvSamples build() {
            if (lengths.isEmpty()) throw new IllegalStateException("no calibration sequences were added");
            int layers = geometry.layers(), kvDim = geometry.kvDim();
            int rows = 0;
            for (int n : lengths) rows += n;
            int[] positions = new int[rows];
            int r = 0;
            for (int n : lengths) for (int p = 0; p < n; p++) positions[r++] = p;
            boolean fisher = Boolean.TRUE.equals(withFisher);
            return new KvSamples(geometry, rows, positions, concat(keys, layers, rows * kvDim),
                    concat(values, layers, rows * kvDim), fisher ? concat(keyGrad, layers, rows * kvDim) : null,
                    fisher ? concat(valueGrad, layers, rows * kvDim) : null);
        }

        private static float[][] concat(List<float[][]> parts, int layers, int total) {
            float[][] out = new float[layers][total];
            for (int l = 0; l < layers; l++) {
                int off = 0;
                for (float[][] p : parts) {
                    System.arraycopy(p[l], 0, out[l], off, p[l].length);
                    off += p[l].length;
                }
            }
            return out;
        }
    }
}
