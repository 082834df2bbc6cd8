package dev.kvserve.kvcache.quant;

import dev.kvserve.kernels.kv.KvKernels;

/**
 * Closed-form multivariate ridge regression with intercept, as AQUA-KV fits its predictors
 * ({@code aquakv/linear_utils.py}): append a ones column to X, {@code C = XᵀX}, add
 * {@code λ·mean(|diag C|)} to the whole diagonal (intercept included), {@code W = C⁻¹ XᵀY}.
 * Normal matrices are accumulated in double; the solve is a Cholesky factorisation (C is symmetric
 * positive definite once damped), where the reference uses a pseudo-inverse: the two agree whenever
 * the damped matrix is invertible, which λ > 0 guarantees for any data.
 */
public final class RidgeRegression {

    /** Y ≈ X·Wᵀ + b: {@code weight} is [out][in] row-major, {@code bias} [out]. */
    public record Fit(int in, int out, float[] weight, float[] bias) {

        /**
         * {@code y[yOff..+out) = W x[xOff..+in) + b}, by a vectorized float dot ({@link KvKernels#dot},
         * fixed summation order): AQUA-KV's read path runs this for every cached token of every layer
         * on every decode step, and the encoder runs the same code, so the reconstruction the decoder
         * rebuilds is the one the encoder predicted from, bit for bit.
         */
        public void apply(float[] x, int xOff, float[] y, int yOff) {
            for (int o = 0; o < out; o++) y[yOff + o] = bias[o] + KvKernels.dot(weight, o * in, x, xOff, in);
        }
    }

    private RidgeRegression() {}

    /**
     * @param x     rows × in, row-major
     * @param y     rows × out, row-major
     * @param ridge λ, relative to the mean diagonal of XᵀX (AQUA-KV default 1e-3)
     */
    public static Fit fit(float[] x, int in, float[] y, int out, int rows, double ridge) {
        if (rows <= 0) throw new IllegalArgumentException("ridge regression needs at least one sample row");
        if ((long) rows * in != x.length || (long) rows * out != y.length) {
            throw new IllegalArgumentException("ridge regression: X has " + x.length + " values, Y " + y.length
                    + ", expected " + rows + "×" + in + " and " + rows + "×" + out);
        }
        if (!(ridge >= 0)) throw new IllegalArgumentException("ridge rate must be >= 0, got " + ridge);
        int n = in + 1;
        double[] cxx = new double[n * n];
        double[] cxy = new double[n * out];
        double[] row = new double[n];
        for (int r = 0; r < rows; r++) {
            for (int i = 0; i < in; i++) row[i] = x[r * in + i];
            row[in] = 1.0;
            for (int i = 0; i < n; i++) {
                double ri = row[i];
                if (ri == 0) continue;
                int base = i * n;
                for (int j = i; j < n; j++) cxx[base + j] += ri * row[j];
                int yb = i * out;
                for (int o = 0; o < out; o++) cxy[yb + o] += ri * y[r * out + o];
            }
        }
        for (int i = 0; i < n; i++) for (int j = 0; j < i; j++) cxx[i * n + j] = cxx[j * n + i];
        double meanDiag = 0;
        for (int i = 0; i < n; i++) meanDiag += Math.abs(cxx[i * n + i]);
        meanDiag /= n;
        double damp = ridge * meanDiag;
        if (damp == 0) damp = 1e-12 * Math.max(meanDiag, 1e-30);
        for (int i = 0; i < n; i++) cxx[i * n + i] += damp;

        double[] l = cholesky(cxx, n);
        float[] weight = new float[out * in];
        float[] bias = new float[out];
        double[] col = new double[n];
        for (int o = 0; o < out; o++) {
            for (int i = 0; i < n; i++) col[i] = cxy[i * out + o];
            solveInPlace(l, n, col);
            for (int i = 0; i < in; i++) weight[o * in + i] = (float) col[i];
            bias[o] = (float) col[in];
        }
        return new Fit(in, out, weight, bias);
    }

    /** ||X·Wᵀ + b − Y||² / ||Y||², the figure AQUA-KV logs (as "equivalent bits" −log4 of it). */
    public static double relativeMse(Fit fit, float[] x, float[] y, int rows) {
        double num = 0, den = 0;
        float[] pred = new float[fit.out()];
        for (int r = 0; r < rows; r++) {
            fit.apply(x, r * fit.in(), pred, 0);
            for (int o = 0; o < fit.out(); o++) {
                double t = y[r * fit.out() + o];
                double d = pred[o] - t;
                num += d * d;
                den += t * t;
            }
        }
        return den == 0 ? (num == 0 ? 0 : Double.POSITIVE_INFINITY) : num / den;
    }

    private static double[] cholesky(double[] a, int n) {
        double[] l = new double[n * n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j <= i; j++) {
                double s = a[i * n + j];
                for (int k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
                if (i == j) {
                    if (!(s > 0)) {
                        throw new ArithmeticException("ridge normal matrix is not positive definite at row " + i
                                + " (non-finite inputs?)");
                    }
                    l[i * n + i] = Math.sqrt(s);
                } else {
                    l[i * n + j] = s / l[j * n + j];
                }
            }
        }
        return l;
    }

    private static void solveInPlace(double[] l, int n, double[] b) {
        for (int i = 0; i < n; i++) {
            double s = b[i];
            for (int k = 0; k < i; k++) s -= l[i * n + k] * b[k];
            b[i] = s / l[i * n + i];
        }
        for (int i = n - 1; i >= 0; i--) {
            double s = b[i];
            for (int k = i + 1; k < n; k++) s -= l[k * n + i] * b[k];
            b[i] = s / l[i * n + i];
        }
    }
}
