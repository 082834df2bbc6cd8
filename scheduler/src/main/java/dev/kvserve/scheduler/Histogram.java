package dev.kvserve.scheduler;

import java.util.Arrays;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.DoubleAdder;

/**
 * A fixed-bucket histogram in Prometheus' model: each observation counts in the first bucket whose
 * upper bound ({@code le}) it does not exceed, plus an implicit {@code +Inf} bucket; a snapshot
 * reports cumulative counts, the total count and the sum. Thread-safe; observations are lock-free.
 */
public final class Histogram {

    /**
     * Latency buckets in seconds: vLLM's TTFT buckets extended below a millisecond, because small
     * models on a fast machine answer in microseconds.
     */
    public static final double[] LATENCY_SECONDS = {
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
            0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};

    private final double[] upperBounds;
    /** Per bucket (not cumulative); the last slot is +Inf. */
    private final AtomicLongArray counts;
    private final DoubleAdder sum = new DoubleAdder();

    public Histogram(double... upperBounds) {
        if (upperBounds.length == 0) throw new IllegalArgumentException("a histogram needs at least one bucket bound");
        for (int i = 0; i < upperBounds.length; i++) {
            if (!Double.isFinite(upperBounds[i]) || (i > 0 && upperBounds[i] <= upperBounds[i - 1])) {
                throw new IllegalArgumentException("bucket bounds must be finite and strictly increasing: "
                        + Arrays.toString(upperBounds));
            }
        }
        this.upperBounds = upperBounds.clone();
        this.counts = new AtomicLongArray(upperBounds.length + 1);
    }

    public void observe(double value) {
        if (Double.isNaN(value)) throw new IllegalArgumentException("cannot observe NaN");
        int i = Arrays.binarySearch(upperBounds, value);
        counts.incrementAndGet(i >= 0 ? i : -i - 1);
        sum.add(value);
    }

    public Snapshot snapshot() {
        long[] cumulative = new long[upperBounds.length + 1];
        long running = 0;
        for (int i = 0; i < cumulative.length; i++) {
            running += counts.get(i);
            cumulative[i] = running;
        }
        return new Snapshot(upperBounds.clone(), cumulative, sum.sum());
    }

    /**
     * @param upperBounds      the finite bucket bounds
     * @param cumulativeCounts observations ≤ each bound, with one more entry for +Inf (the total count)
     * @param sum              sum of all observations
     */
    public record Snapshot(double[] upperBounds, long[] cumulativeCounts, double sum) {

        public long count() {
            return cumulativeCounts[cumulativeCounts.length - 1];
        }

        /** Appends this histogram in the Prometheus text exposition format. */
        public void writePrometheus(StringBuilder out, String name, String help) {
            out.append("# HELP ").append(name).append(' ').append(help).append('\n');
            out.append("# TYPE ").append(name).append(" histogram\n");
            for (int i = 0; i < upperBounds.length; i++) {
                out.append(name).append("_bucket{le=\"").append(formatBound(upperBounds[i])).append("\"} ")
                        .append(cumulativeCounts[i]).append('\n');
            }
            out.append(name).append("_bucket{le=\"+Inf\"} ").append(count()).append('\n');
            out.append(name).append("_sum ").append(String.format(Locale.ROOT, "%.9g", sum)).append('\n');
            out.append(name).append("_count ").append(count()).append('\n');
        }

        private static String formatBound(double bound) {
            String s = Double.toString(bound);
            return s.contains("E") ? new java.math.BigDecimal(s).stripTrailingZeros().toPlainString() : s;
        }
    }
}
