package dev.kvserve.http;

import dev.kvserve.scheduler.EngineStats;

import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;

/**
 * The HTTP side of /metrics: responses by endpoint and status, requests in flight, and generations
 * cancelled because their client went away. The engine's own numbers (queue, KV blocks and bytes,
 * compression ratio, token counters, TTFT and inter-token latency) come from {@link EngineStats}.
 */
final class HttpMetrics {

    private final Map<String, LongAdder> responses = new ConcurrentHashMap<>();
    private final LongAdder disconnectCancels = new LongAdder();

    void responded(String endpoint, int status) {
        responses.computeIfAbsent(endpoint + "\u0000" + status, k -> new LongAdder()).increment();
    }

    void cancelledByDisconnect() {
        disconnectCancels.increment();
    }

    long disconnectCancels() {
        return disconnectCancels.sum();
    }

    /** The whole exposition: engine metrics, then HTTP metrics. */
    String render(EngineStats engine, int inFlight) {
        StringBuilder out = new StringBuilder(engine.toPrometheus());
        out.append("# HELP kvserve_http_requests_in_flight Generation requests being answered.\n");
        out.append("# TYPE kvserve_http_requests_in_flight gauge\n");
        out.append("kvserve_http_requests_in_flight ").append(inFlight).append('\n');
        out.append("# HELP kvserve_http_disconnect_cancels_total Generations cancelled because the client disconnected.\n");
        out.append("# TYPE kvserve_http_disconnect_cancels_total counter\n");
        out.append("kvserve_http_disconnect_cancels_total ").append(disconnectCancels.sum()).append('\n');
        out.append("# HELP kvserve_http_responses_total HTTP responses by endpoint and status code.\n");
        out.append("# TYPE kvserve_http_responses_total counter\n");
        for (var e : new TreeMap<>(responses).entrySet()) {
            String[] key = e.getKey().split("\u0000");
            out.append("kvserve_http_responses_total{endpoint=\"").append(escape(key[0])).append("\",status=\"")
                    .append(key[1]).append("\"} ").append(e.getValue().sum()).append('\n');
        }
        return out.toString();
    }

    private static String escape(String label) {
        return label.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n");
    }
}
