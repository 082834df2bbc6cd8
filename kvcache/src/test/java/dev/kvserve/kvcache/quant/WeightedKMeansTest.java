package dev.kvserve.kvcache.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

class WeightedKMeansTest {

    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3})
    void recoversWellSeparatedOneDimensionalClusters(long seed) {
        float[] truth = {-3.1f, -1.2f, 0.4f, 2.5f};
        Random r = new Random(seed);
        float[] points = new float[4000];
        for (int i = 0; i < points.length; i++) points[i] = truth[r.nextInt(4)] + (float) (0.05 * r.nextGaussian());
        float[] c = WeightedKMeans.fit(points, 1, null, 4, seed).centroids();
        Arrays.sort(c);
        for (int j = 0; j < 4; j++) assertThat((double) c[j]).isCloseTo(truth[j], org.assertj.core.data.Offset.offset(0.01));
    }

    @ParameterizedTest
    @ValueSource(longs = {7, 8})
    void recoversClustersInFourDimensions(long seed) {
        Random r = new Random(seed);
        int k = 8, dim = 4;
        float[] truth = new float[k * dim];
        for (int i = 0; i < truth.length; i++) truth[i] = (float) (r.nextInt(7) * 3 - 9) + (i % 2);
        float[] points = new float[3000 * dim];
        for (int i = 0; i < 3000; i++) {
            int c = i % k;
            for (int d = 0; d < dim; d++) points[i * dim + d] = truth[c * dim + d] + (float) (0.03 * r.nextGaussian());
        }
        WeightedKMeans.Result res = WeightedKMeans.fit(points, dim, null, k, seed);
        for (int c = 0; c < k; c++) {
            int near = WeightedKMeans.nearest(truth, c * dim, dim, res.centroids(), k);
            for (int d = 0; d < dim; d++) {
                assertThat((double) res.centroids()[near * dim + d]).isCloseTo(truth[c * dim + d], org.assertj.core.data.Offset.offset(0.02));
            }
        }
    }

    @Test
    void singleClusterIsTheWeightedMean() {
        float[] points = {0, 1, 2, 10};
        float[] weights = {1, 1, 1, 7};
        float c = WeightedKMeans.fit(points, 1, weights, 1, 0).centroids()[0];
        assertThat((double) c).isCloseTo((0 + 1 + 2 + 70) / 10.0, org.assertj.core.data.Offset.offset(1e-5));
    }

    @Test
    void zeroWeightPointsDoNotMoveCentroids() {
        float[] points = {0, 0.1f, -0.1f, 5, 5.2f, 4.8f, 100};
        float[] weights = {1, 1, 1, 1, 1, 1, 0};
        float[] c = WeightedKMeans.fit(points, 1, weights, 2, 3).centroids();
        Arrays.sort(c);
        assertThat((double) c[0]).isCloseTo(0, org.assertj.core.data.Offset.offset(1e-6));
        assertThat((double) c[1]).isCloseTo(5, org.assertj.core.data.Offset.offset(1e-6));
    }

    @Test
    void weightsPullCentroidsTowardSensitivePoints() {
        // Uniform data; weight grows to the right, so the weighted codebook crowds there.
        Random r = new Random(5);
        float[] points = new float[5000];
        float[] weights = new float[5000];
        for (int i = 0; i < points.length; i++) {
            points[i] = (float) (r.nextDouble() * 2 - 1);
            weights[i] = (float) Math.exp(4 * points[i]);
        }
        float[] plain = WeightedKMeans.fit(points, 1, null, 8, 0).centroids();
        float[] weighted = WeightedKMeans.fit(points, 1, weights, 8, 0).centroids();
        assertThat(count(weighted)).isGreaterThan(count(plain));
    }

    private static long count(float[] c) {
        return java.util.stream.IntStream.range(0, c.length).filter(i -> c[i] > 0.25f).count();
    }

    @Test
    void sameSeedSameResultAndMoreClustersThanPointsIsHandled() {
        float[] points = {1, 2, 3};
        float[] a = WeightedKMeans.fit(points, 1, null, 5, 9).centroids();
        float[] b = WeightedKMeans.fit(points, 1, null, 5, 9).centroids();
        assertThat(a).containsExactly(b);
        for (float x : a) assertThat(x).isIn(1f, 2f, 3f);
    }

    @Test
    void refusesBadInput() {
        assertThatThrownBy(() -> WeightedKMeans.fit(new float[] {1, 2}, 1, new float[] {1, -1}, 1, 0))
                .hasMessageContaining("weights must be finite and >= 0");
        assertThatThrownBy(() -> WeightedKMeans.fit(new float[] {1, 2}, 1, new float[] {0, 0}, 1, 0))
                .hasMessageContaining("every weight is zero");
        assertThatThrownBy(() -> WeightedKMeans.fit(new float[] {1, Float.NaN}, 1, null, 1, 0)).hasMessageContaining("not finite");
        assertThatThrownBy(() -> WeightedKMeans.fit(new float[] {1, 2, 3}, 2, null, 1, 0)).hasMessageContaining("whole number");
        assertThatThrownBy(() -> WeightedKMeans.fit(new float[0], 1, null, 1, 0)).hasMessageContaining("at least one point");
    }
}
