package dev.kvserve.http;

import java.util.Arrays;

/**
 * Mean and percentiles of a latency sample, in milliseconds. Percentiles interpolate linearly
 * between order statistics, as numpy's default does (and so vLLM's benchmark_serving).
 */
public record LatencySummary(int count, double mean, double p50, double p90, double p99, double max) {

    public static final LatencySummary EMPTY = new LatencySummary(0, Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN);

    public static LatencySummary of(double[] millis) {
        if (millis.length == 0) return EMPTY;
        double[] sorted = millis.clone();
        Arrays.sort(sorted);
        double sum = 0;
        for (double v : sorted) sum += v;
        return new LatencySummary(sorted.length, sum / sorted.length, percentile(sorted, 50), percentile(sorted, 90),
                percentile(sorted, 99), sorted[sorted.length - 1]);
    }

    /** {@code p} in [0, 100] of an ascending sample. */
    static double percentile(double[] sorted, double p) {
        double rank = p / 100 * (sorted.length - 1);
        int lo = (int) Math.floor(rank);
        int hi = Math.min(lo + 1, sorted.length - 1);
        return sorted[lo] + (rank - lo) * (sorted[hi] - sorted[lo]);
    }
}
