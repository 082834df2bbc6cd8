package dev.kvserve.scheduler;

import java.util.concurrent.atomic.LongAdder;

/** Monotonic counters and latency histograms, written by the engine thread, read by anyone. */
final class EngineCounters {

    final LongAdder promptTokens = new LongAdder();
    final LongAdder generationTokens = new LongAdder();
    final LongAdder requests = new LongAdder();
    final LongAdder preemptions = new LongAdder();
    final Histogram timeToFirstToken = new Histogram(Histogram.LATENCY_SECONDS);
    final Histogram interTokenLatency = new Histogram(Histogram.LATENCY_SECONDS);

    void firstToken(long sinceSubmitNanos) {
        generationTokens.increment();
        timeToFirstToken.observe(sinceSubmitNanos / 1e9);
    }

    void nextToken(long sincePreviousNanos) {
        generationTokens.increment();
        interTokenLatency.observe(sincePreviousNanos / 1e9);
    }
}
