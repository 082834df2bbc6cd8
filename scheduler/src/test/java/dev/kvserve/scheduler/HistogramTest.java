package dev.kvserve.scheduler;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import org.junit.jupiter.api.Test;

class HistogramTest {

    @Test
    void countsCumulativelyWithInclusiveUpperBounds() {
        var histogram = new Histogram(0.1, 1, 10);
        for (double v : new double[] {0.05, 0.1, 0.5, 1, 3, 50}) histogram.observe(v);
        var snapshot = histogram.snapshot();
        assertThat(snapshot.cumulativeCounts()).containsExactly(2, 4, 5, 6);
        assertThat(snapshot.count()).isEqualTo(6);
        assertThat(snapshot.sum()).isCloseTo(54.65, org.assertj.core.data.Offset.offset(1e-9));
    }

    @Test
    void rendersPrometheusText() {
        var histogram = new Histogram(0.0001, 0.5, 2);
        histogram.observe(0.3);
        var out = new StringBuilder();
        histogram.snapshot().writePrometheus(out, "x_seconds", "Some latency.");
        assertThat(out.toString()).isEqualTo("""
                # HELP x_seconds Some latency.
                # TYPE x_seconds histogram
                x_seconds_bucket{le="0.0001"} 0
                x_seconds_bucket{le="0.5"} 1
                x_seconds_bucket{le="2.0"} 1
                x_seconds_bucket{le="+Inf"} 1
                x_seconds_sum 0.300000000
                x_seconds_count 1
                """);
    }

    @Test
    void loseNoObservationUnderConcurrency() throws Exception {
        var histogram = new Histogram(Histogram.LATENCY_SECONDS);
        int threads = 8;
        int each = 10_000;
        var done = new CountDownLatch(threads);
        try (var pool = Executors.newFixedThreadPool(threads)) {
            for (int t = 0; t < threads; t++) {
                int offset = t;
                pool.execute(() -> {
                    for (int i = 0; i < each; i++) histogram.observe((i + offset) % 7 * 0.001);
                    done.countDown();
                });
            }
            done.await();
        }
        assertThat(histogram.snapshot().count()).isEqualTo((long) threads * each);
    }

    @Test
    void rejectsUnorderedBounds() {
        assertThatThrownBy(() -> new Histogram(1, 1)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("strictly increasing");
    }
}
