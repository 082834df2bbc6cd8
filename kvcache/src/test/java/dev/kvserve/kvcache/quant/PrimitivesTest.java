package dev.kvserve.kvcache.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.data.Offset.offset;

import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Bit packing, the Hadamard transform, nuq codebooks, ridge regression and the HIGGS quantizer. */
class PrimitivesTest {

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 4, 5, 7, 8, 10, 12, 16})
    void bitPackingRoundTrips(int bits) {
        Random r = new Random(bits);
        int n = 37;
        int[] codes = new int[n];
        byte[] buf = new byte[3 + BitPacking.bytesFor(n, bits)];
        for (int i = 0; i < n; i++) {
            codes[i] = r.nextInt(1 << bits);
            BitPacking.put(buf, 3, i, bits, codes[i]);
        }
        for (int i = 0; i < n; i++) assertThat(BitPacking.get(buf, 3, i, bits)).isEqualTo(codes[i]);
        assertThat(BitPacking.bytesFor(32, 3)).isEqualTo(12);
        assertThat(BitPacking.bytesFor(8, 1)).isEqualTo(1);
        // Overwriting one code leaves its neighbours alone.
        BitPacking.put(buf, 3, 5, bits, 0);
        assertThat(BitPacking.get(buf, 3, 4, bits)).isEqualTo(codes[4]);
        assertThat(BitPacking.get(buf, 3, 6, bits)).isEqualTo(codes[6]);
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 8, 32, 64})
    void hadamardIsOrthogonal(int n) {
        // Rows of H are orthogonal with squared norm n: H·H = n·I.
        for (int i = 0; i < n; i++) {
            float[] e = new float[n];
            e[i] = 1;
            Hadamard.transform(e, 0, n);
            for (int j = 0; j < n; j++) assertThat(Math.abs(e[j])).isEqualTo(1f);
            Hadamard.transform(e, 0, n);
            for (int j = 0; j < n; j++) assertThat(e[j]).isEqualTo(i == j ? n : 0f);
        }
        Random r = new Random(n);
        float[] x = new float[n + 2];
        double norm = 0;
        for (int i = 1; i <= n; i++) {
            x[i] = (float) r.nextGaussian();
            norm += x[i] * x[i];
        }
        Hadamard.transform(x, 1, n);
        double after = 0;
        for (int i = 1; i <= n; i++) after += x[i] * x[i];
        assertThat(after).isCloseTo(n * norm, offset(1e-3 * n * norm));
        assertThat(x[0]).isZero();
        assertThat(x[n + 1]).isZero();
        assertThatThrownBy(() -> Hadamard.transform(new float[6], 0, 6)).hasMessageContaining("power of two");
    }

    @Test
    void nuqCodebookEncodesToNearestAndAppliesQNorm() {
        NuqCodebook book = NuqCodebook.of(new float[] {-0.9f, -0.2f, 0.3f, 0.8f});
        assertThat(book.bits()).isEqualTo(2);
        assertThat(book.encode(-5f)).isEqualTo(0);
        assertThat(book.encode(0.04f)).isEqualTo(1);
        assertThat(book.encode(0.06f)).isEqualTo(2);
        assertThat(book.encode(0.7f)).isEqualTo(3);
        assertThat(book.decode(2)).isEqualTo(0.3f);
        NuqCodebook q = book.withQNorm(2f, 0.5f);
        assertThat(q.encode(0.06f)).isEqualTo(2);
        assertThat(q.decode(2)).isEqualTo(0.3f * 2 + 0.5f);
        assertThatThrownBy(() -> NuqCodebook.of(new float[] {0.5f, 0.1f})).hasMessageContaining("ascending");
        assertThatThrownBy(() -> NuqCodebook.of(new float[] {0f, 0.1f, 0.2f})).hasMessageContaining("2^bits");
    }

    @Test
    void ridgeRegressionRecoversAnExactLinearMap() {
        Random r = new Random(3);
        int in = 6, out = 4, rows = 400;
        float[] w = new float[out * in], b = new float[out];
        for (int i = 0; i < w.length; i++) w[i] = (float) r.nextGaussian();
        for (int i = 0; i < out; i++) b[i] = (float) r.nextGaussian();
        float[] x = new float[rows * in], y = new float[rows * out];
        for (int i = 0; i < x.length; i++) x[i] = (float) r.nextGaussian();
        RidgeRegression.Fit truth = new RidgeRegression.Fit(in, out, w, b);
        for (int row = 0; row < rows; row++) truth.apply(x, row * in, y, row * out);
        RidgeRegression.Fit fit = RidgeRegression.fit(x, in, y, out, rows, 0);
        for (int i = 0; i < w.length; i++) assertThat((double) fit.weight()[i]).isCloseTo(w[i], offset(1e-4));
        for (int i = 0; i < out; i++) assertThat((double) fit.bias()[i]).isCloseTo(b[i], offset(1e-4));
        assertThat(RidgeRegression.relativeMse(fit, x, y, rows)).isLessThan(1e-8);
        // Damping shrinks the weights toward zero.
        RidgeRegression.Fit damped = RidgeRegression.fit(x, in, y, out, rows, 10);
        double nFit = 0, nDamped = 0;
        for (int i = 0; i < w.length; i++) {
            nFit += fit.weight()[i] * fit.weight()[i];
            nDamped += damped.weight()[i] * damped.weight()[i];
        }
        assertThat(nDamped).isLessThan(nFit);
    }

    @Test
    void gaussianGridIsNearMseOptimal() {
        GaussianGrid grid = GaussianGrid.standard(2, 16);
        Random r = new Random(11);
        double mse = 0;
        int n = 20000;
        float[] y = new float[2];
        for (int i = 0; i < n; i++) {
            y[0] = (float) r.nextGaussian();
            y[1] = (float) r.nextGaussian();
            int c = grid.nearest(y, 0);
            for (int d = 0; d < 2; d++) mse += Math.pow(y[d] - grid.coordinate(c, d), 2);
        }
        mse /= 2 * n;
        // The scalar 2-bit Lloyd-Max quantizer of N(0,1) has MSE 0.1175; a 2-D grid with 16 points does a bit better.
        assertThat(mse).isBetween(0.08, 0.1175);
    }

    @Test
    void higgsRoundTripHasGridLevelError() {
        GaussianGrid grid = GaussianGrid.standard(2, 16);
        HiggsQuantizer q = new HiggsQuantizer(grid, 48, 32);
        assertThat(q.groups()).isEqualTo(2);
        assertThat(q.bytesPerVector()).isEqualTo(BitPacking.bytesFor(32, 4) + 4);
        Random r = new Random(2);
        double err = 0, norm = 0;
        float[] x = new float[48], y = new float[48];
        for (int trial = 0; trial < 200; trial++) {
            for (int i = 0; i < 48; i++) x[i] = (float) (r.nextGaussian() * (1 + i % 5) + (i == 3 ? 10 : 0));
            q.roundTrip(x, 0, y, 0);
            for (int i = 0; i < 48; i++) {
                err += (x[i] - y[i]) * (x[i] - y[i]);
                norm += x[i] * x[i];
            }
        }
        // Relative MSE close to the grid's MSE (~0.1); the rotation makes it independent of outliers.
        assertThat(err / norm).isBetween(0.05, 0.16);
        float[] zero = new float[48], back = new float[48];
        q.roundTrip(zero, 0, back, 0);
        assertThat(back).containsOnly(0f);
    }
}
