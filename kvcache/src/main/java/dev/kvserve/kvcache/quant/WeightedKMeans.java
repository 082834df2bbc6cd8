package dev.kvserve.kvcache.quant;

import java.util.Arrays;
import java.util.Random;
import java.util.stream.IntStream;

/**
 * Weighted k-means (Lloyd) with seeded greedy k-means++ initialisation, for points of any dimension.
 *
 * <p>KVQuant fits its 1-D non-uniform codebooks with it (weights = Fisher information, times the squared
 * scale), Coupled Quantization its c-dimensional centroids (weights = summed Fisher of the group), and
 * AQUA-KV's Gaussian grids come out of it too. Passing {@code null} weights gives the unweighted ablation.
 *
 * <p>Initialisation follows scikit-learn's "greedy k-means++" (the reference KVQuant calibration calls
 * {@code KMeans(random_state=0, n_init="auto", max_iter=50)}, which for k-means++ means one run): the
 * first centre is drawn with probability proportional to weight, each further one is the best of
 * {@code 2 + floor(ln k)} candidates drawn proportional to {@code weight * D^2}. Empty clusters are
 * re-seeded at the point with the largest weighted squared error. Results are a deterministic
 * function of the inputs and the seed (the parallel assignment step writes per-point results only).
 */
public final class WeightedKMeans {

    /** Centroids row-major ({@code k * dim}), the final weighted inertia and Lloyd iterations run. */
    public record Result(float[] centroids, int k, int dim, double inertia, int iterations) {

        public float[] centroid(int j) {
            return Arrays.copyOfRange(centroids, j * dim, (j + 1) * dim);
        }
    }

    /** Defaults matching the KVQuant reference calibration: 50 iterations, relative tolerance 1e-4. */
    public static final int DEFAULT_MAX_ITER = 50;
    public static final double DEFAULT_TOL = 1e-4;

    private WeightedKMeans() {}

    public static Result fit(float[] points, int dim, float[] weights, int k, long seed) {
        return fit(points, dim, weights, k, DEFAULT_MAX_ITER, DEFAULT_TOL, seed);
    }

    /**
     * @param points  row-major {@code n * dim}
     * @param weights {@code n} non-negative sample weights, or null for all ones
     * @param tol     stop when the summed squared centroid shift falls below {@code tol} times the
     *                mean per-dimension weighted variance of the data (scikit-learn's criterion)
     */
    public static Result fit(float[] points, int dim, float[] weights, int k, int maxIter, double tol, long seed) {
        if (dim <= 0) throw new IllegalArgumentException("k-means dimension must be positive, got " + dim);
        if (points.length % dim != 0) {
            throw new IllegalArgumentException("k-means: " + points.length + " values are not a whole number of "
                    + dim + "-dimensional points");
        }
        int n = points.length / dim;
        if (n == 0) throw new IllegalArgumentException("k-means needs at least one point");
        if (k <= 0) throw new IllegalArgumentException("k-means needs k >= 1, got " + k);
        if (weights != null && weights.length != n) {
            throw new IllegalArgumentException("k-means: " + weights.length + " weights for " + n + " points");
        }
        double totalWeight = 0;
        for (int i = 0; i < n; i++) {
            double w = weight(weights, i);
            if (!(w >= 0) || Double.isInfinite(w)) {
                throw new IllegalArgumentException("k-means weight " + i + " is " + w + "; weights must be finite and >= 0");
            }
            totalWeight += w;
        }
        for (float p : points) {
            if (!Float.isFinite(p)) throw new IllegalArgumentException("k-means point value is not finite: " + p);
        }
        if (totalWeight <= 0) throw new IllegalArgumentException("k-means: every weight is zero");

        Random random = new Random(seed);
        float[] centroids = initPlusPlus(points, dim, weights, n, k, random);

        double tolAbs = tol * meanVariance(points, dim, weights, n, totalWeight);
        int[] assign = new int[n];
        float[] dist = new float[n];
        int iterations = 0;
        double[] sums = new double[k * dim];
        double[] mass = new double[k];
        for (int iter = 0; iter < maxIter; iter++) {
            iterations = iter + 1;
            assignAll(points, dim, centroids, k, assign, dist);
            Arrays.fill(sums, 0);
            Arrays.fill(mass, 0);
            for (int i = 0; i < n; i++) {
                double w = weight(weights, i);
                int c = assign[i];
                mass[c] += w;
                for (int d = 0; d < dim; d++) sums[c * dim + d] += w * points[i * dim + d];
            }
            float[] next = new float[k * dim];
            boolean[] taken = new boolean[n];
            for (int c = 0; c < k; c++) {
                if (mass[c] > 0) {
                    for (int d = 0; d < dim; d++) next[c * dim + d] = (float) (sums[c * dim + d] / mass[c]);
                } else {
                    // An empty cluster is useless as a code: move it where the error is largest.
                    int far = farthest(weights, dist, taken);
                    taken[far] = true;
                    dist[far] = 0;
                    System.arraycopy(points, far * dim, next, c * dim, dim);
                }
            }
            double shift = 0;
            for (int i = 0; i < next.length; i++) {
                double dlt = next[i] - centroids[i];
                shift += dlt * dlt;
            }
            centroids = next;
            if (shift <= tolAbs) break;
        }
        assignAll(points, dim, centroids, k, assign, dist);
        double inertia = 0;
        for (int i = 0; i < n; i++) inertia += weight(weights, i) * dist[i];
        return new Result(centroids, k, dim, inertia, iterations);
    }

    /** Index of the centroid nearest to {@code points[i]} (ties go to the lower index). */
    public static int nearest(float[] points, int offset, int dim, float[] centroids, int k) {
        int best = 0;
        float bestD = Float.POSITIVE_INFINITY;
        for (int c = 0; c < k; c++) {
            float d = 0;
            int co = c * dim;
            for (int j = 0; j < dim; j++) {
                float t = points[offset + j] - centroids[co + j];
                d += t * t;
            }
            if (d < bestD) {
                bestD = d;
                best = c;
            }
        }
        return best;
    }

    private static double weight(float[] weights, int i) {
        return weights == null ? 1.0 : weights[i];
    }

    private static int farthest(float[] weights, float[] dist, boolean[] taken) {
        int best = -1;
        double bestV = -1;
        for (int i = 0; i < dist.length; i++) {
            if (taken[i]) continue;
            double v = weight(weights, i) * dist[i];
            if (v > bestV) {
                bestV = v;
                best = i;
            }
        }
        return best < 0 ? 0 : best;
    }

    private static double meanVariance(float[] points, int dim, float[] weights, int n, double totalWeight) {
        double total = 0;
        for (int d = 0; d < dim; d++) {
            double mean = 0;
            for (int i = 0; i < n; i++) mean += weight(weights, i) * points[i * dim + d];
            mean /= totalWeight;
            double var = 0;
            for (int i = 0; i < n; i++) {
                double t = points[i * dim + d] - mean;
                var += weight(weights, i) * t * t;
            }
            total += var / totalWeight;
        }
        return total / dim;
    }

    private static void assignAll(float[] points, int dim, float[] centroids, int k, int[] assign, float[] dist) {
        int n = assign.length;
        int chunk = 4096;
        int chunks = (n + chunk - 1) / chunk;
        IntStream range = IntStream.range(0, chunks);
        // Only large problems are worth the fork/join overhead; results do not depend on the split.
        if ((long) n * k * dim > 1L << 22) range = range.parallel();
        if (dim == 1) {
            float[] sorted = centroids.clone();
            Integer[] order = new Integer[k];
            for (int i = 0; i < k; i++) order[i] = i;
            Arrays.sort(order, (a, b) -> Float.compare(centroids[a], centroids[b]));
            for (int i = 0; i < k; i++) sorted[i] = centroids[order[i]];
            range.forEach(ch -> {
                for (int i = ch * chunk, end = Math.min(n, i + chunk); i < end; i++) {
                    int s = nearestSorted(sorted, points[i]);
                    assign[i] = order[s];
                    float t = points[i] - sorted[s];
                    dist[i] = t * t;
                }
            });
        } else {
            float[] norms = new float[k];
            for (int c = 0; c < k; c++) {
                float s = 0;
                for (int j = 0; j < dim; j++) s += centroids[c * dim + j] * centroids[c * dim + j];
                norms[c] = s;
            }
            range.forEach(ch -> {
                for (int i = ch * chunk, end = Math.min(n, i + chunk); i < end; i++) {
                    int off = i * dim;
                    float xx = 0;
                    for (int j = 0; j < dim; j++) xx += points[off + j] * points[off + j];
                    int best = 0;
                    float bestD = Float.POSITIVE_INFINITY;
                    for (int c = 0; c < k; c++) {
                        int co = c * dim;
                        float dot = 0;
                        for (int j = 0; j < dim; j++) dot += points[off + j] * centroids[co + j];
                        float d = norms[c] - 2 * dot;
                        if (d < bestD) {
                            bestD = d;
                            best = c;
                        }
                    }
                    assign[i] = best;
                    dist[i] = Math.max(0f, bestD + xx);
                }
            });
        }
    }

    /** Position of the value in ascending {@code sorted} nearest to x (lower one on a tie). */
    static int nearestSorted(float[] sorted, float x) {
        int lo = 0, hi = sorted.length - 1;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (sorted[mid] < x) lo = mid + 1;
            else hi = mid;
        }
        if (lo > 0 && x - sorted[lo - 1] <= sorted[lo] - x) return lo - 1;
        return lo;
    }

    private static float[] initPlusPlus(float[] points, int dim, float[] weights, int n, int k, Random random) {
        float[] centroids = new float[k * dim];
        double[] cumulative = new double[n];
        // First centre: proportional to weight alone.
        double acc = 0;
        for (int i = 0; i < n; i++) {
            acc += weight(weights, i);
            cumulative[i] = acc;
        }
        int first = sample(cumulative, random);
        System.arraycopy(points, first * dim, centroids, 0, dim);
        double[] closest = new double[n];
        for (int i = 0; i < n; i++) closest[i] = sqDist(points, i * dim, centroids, 0, dim);
        int trials = 2 + (int) Math.log(k);
        double[] candidateClosest = new double[n];
        double[] bestClosest = new double[n];
        for (int c = 1; c < k; c++) {
            acc = 0;
            for (int i = 0; i < n; i++) {
                acc += weight(weights, i) * closest[i];
                cumulative[i] = acc;
            }
            if (acc <= 0) {
                // Fewer distinct (weighted) points than clusters: duplicate a weighted point.
                acc = 0;
                for (int i = 0; i < n; i++) {
                    acc += weight(weights, i);
                    cumulative[i] = acc;
                }
                int pick = sample(cumulative, random);
                System.arraycopy(points, pick * dim, centroids, c * dim, dim);
                continue;
            }
            int bestCandidate = -1;
            double bestPotential = Double.POSITIVE_INFINITY;
            for (int t = 0; t < trials; t++) {
                int cand = sample(cumulative, random);
                double potential = 0;
                for (int i = 0; i < n; i++) {
                    double d = Math.min(closest[i], sqDist(points, i * dim, points, cand * dim, dim));
                    candidateClosest[i] = d;
                    potential += weight(weights, i) * d;
                }
                if (potential < bestPotential) {
                    bestPotential = potential;
                    bestCandidate = cand;
                    System.arraycopy(candidateClosest, 0, bestClosest, 0, n);
                }
            }
            System.arraycopy(points, bestCandidate * dim, centroids, c * dim, dim);
            System.arraycopy(bestClosest, 0, closest, 0, n);
        }
        return centroids;
    }

    private static int sample(double[] cumulative, Random random) {
        double total = cumulative[cumulative.length - 1];
        double r = random.nextDouble() * total;
        int lo = 0, hi = cumulative.length - 1;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (cumulative[mid] > r) hi = mid;
            else lo = mid + 1;
        }
        return lo;
    }

    private static double sqDist(float[] a, int ao, float[] b, int bo, int dim) {
        double s = 0;
        for (int j = 0; j < dim; j++) {
            double t = a[ao + j] - b[bo + j];
            s += t * t;
        }
        return s;
    }
}
