package dev.kvserve.kvcache.select;

import java.util.Random;

/**
 * k-means in "semantic space" as ClusterKV builds it (RAFT k-means with cosine distance): points are
 * assigned to the centroid of largest cosine similarity, centroids are the plain means of their
 * points (so {@code q · c} is the mean score of the cluster's keys), seeded with k-means++ on the
 * cosine distance {@code 1 - cos}. An emptied cluster restarts at the point farthest from its
 * centroid. Deterministic for a given {@link Random}.
 */
final class CosineKMeans {

    /** @param centroids [k][d] row-major; @param labels cluster of each point */
    record Result(int k, float[] centroids, int[] labels) {}

    private CosineKMeans() {}

    /** Clusters points {@code x[i*d .. i*d+d)}, i < n, into min(k, n) clusters in at most {@code iterations} rounds. */
    static Result fit(float[] x, int n, int d, int k, int iterations, Random rnd) {
        if (n == 0) return new Result(0, new float[0], new int[0]);
        k = Math.min(k, n);
        float[] xn = normalized(x, n, d);
        float[] c = new float[k * d];
        initPlusPlus(x, xn, n, d, k, rnd, c);
        float[] cn = normalized(c, k, d);
        int[] labels = new int[n];
        float[] sim = new float[n];
        assign(xn, n, d, cn, k, labels, sim);
        for (int it = 0; it < iterations; it++) {
            int[] count = new int[k];
            double[] sum = new double[k * d];
            for (int i = 0; i < n; i++) {
                int j = labels[i];
                count[j]++;
                for (int t = 0; t < d; t++) sum[j * d + t] += x[i * d + t];
            }
            for (int j = 0; j < k; j++) {
                if (count[j] == 0) {
                    int far = 0;
                    for (int i = 1; i < n; i++) if (sim[i] < sim[far]) far = i;
                    System.arraycopy(x, far * d, c, j * d, d);
                    sim[far] = 1f;
                    continue;
                }
                for (int t = 0; t < d; t++) c[j * d + t] = (float) (sum[j * d + t] / count[j]);
            }
            cn = normalized(c, k, d);
            int[] before = labels.clone();
            assign(xn, n, d, cn, k, labels, sim);
            if (java.util.Arrays.equals(before, labels)) break;
        }
        return new Result(k, c, labels);
    }

    private static void initPlusPlus(float[] x, float[] xn, int n, int d, int k, Random rnd, float[] c) {
        double[] dist = new double[n];
        int first = rnd.nextInt(n);
        System.arraycopy(x, first * d, c, 0, d);
        for (int i = 0; i < n; i++) dist[i] = cosDistance(xn, i, xn, first, d);
        for (int j = 1; j < k; j++) {
            double total = 0;
            for (double v : dist) total += v * v;
            int pick;
            if (total <= 0) {
                pick = rnd.nextInt(n);
            } else {
                double u = rnd.nextDouble() * total;
                pick = n - 1;
                for (int i = 0; i < n; i++) {
                    u -= dist[i] * dist[i];
                    if (u <= 0) {
                        pick = i;
                        break;
                    }
                }
            }
            System.arraycopy(x, pick * d, c, j * d, d);
            for (int i = 0; i < n; i++) dist[i] = Math.min(dist[i], cosDistance(xn, i, xn, pick, d));
        }
    }

    private static double cosDistance(float[] a, int i, float[] b, int j, int d) {
        double dot = 0;
        for (int t = 0; t < d; t++) dot += (double) a[i * d + t] * b[j * d + t];
        return Math.max(0, 1 - dot);
    }

    /** Label of each point = centroid of largest cosine similarity; sim receives that similarity. */
    static void assign(float[] xn, int n, int d, float[] cn, int k, int[] labels, float[] sim) {
        for (int i = 0; i < n; i++) {
            double best = Double.NEGATIVE_INFINITY;
            int arg = 0;
            for (int j = 0; j < k; j++) {
                double dot = 0;
                for (int t = 0; t < d; t++) dot += (double) xn[i * d + t] * cn[j * d + t];
                if (dot > best) {
                    best = dot;
                    arg = j;
                }
            }
            labels[i] = arg;
            sim[i] = (float) best;
        }
    }

    /** Rows scaled to unit length (zero rows stay zero). */
    static float[] normalized(float[] x, int n, int d) {
        float[] out = new float[n * d];
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int t = 0; t < d; t++) s += (double) x[i * d + t] * x[i * d + t];
            double inv = s > 0 ? 1 / Math.sqrt(s) : 0;
            for (int t = 0; t < d; t++) out[i * d + t] = (float) (x[i * d + t] * inv);
        }
        return out;
    }
}
