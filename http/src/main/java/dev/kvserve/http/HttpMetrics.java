package dev.kvserve.http;

import dev.kvserve.scheduler.EngineStats;

import java.util.EnumMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;

/**
 * The HTTP side of /metrics: responses by endpoint and status, requests in flight, generations
 * cancelled because their client went away, and requests or connections the transport limits
 * refused or closed (by {@link Refusal}). The engine's own numbers (queue, KV blocks and bytes,
 * compression ratio, token counters, TTFT and inter-token latency) come from {@link EngineStats}.
 */
final class HttpMetrics {

    private final Map<String, LongAdder> responses = new ConcurrentHashMap<>();
    private final LongAdder disconnectCancels = new LongAdder();
    private final Map<Refusal, LongAdder> refusals = new EnumMap<>(Refusal.class);

    /** Why the transport refused a request or closed a connection: a fixed label set. */
    enum Refusal {
        /** An idle keep-alive connection closed. */
        IDLE_TIMEOUT("idle_timeout"),
        /** 408: a request's head or body did not arrive in time. */
        REQUEST_TIMEOUT("request_timeout"),
        /** 431: header section too large or too many header fields. */
        HEADERS_TOO_LARGE("headers_too_large"),
        /** 414: request line too long. */
        URI_TOO_LONG("uri_too_long"),
        /** 400: ambiguous or malformed framing (Content-Length / Transfer-Encoding), or an unparsable request. */
        BAD_FRAMING("bad_framing"),
        /** 503: over --max-connections. */
        CONNECTION_LIMIT("connection_limit"),
        /** 401: missing or wrong API key. */
        UNAUTHORIZED("unauthorized");

        final String label;

        Refusal(String label) {
            this.label = label;
        }
    }

    HttpMetrics() {
        for (Refusal r : Refusal.values()) refusals.put(r, new LongAdder());
    }

    void refused(Refusal reason) {
        refusals.get(reason).increment();
    }

    long refusals(Refusal reason) {
        return refusals.get(reason).sum();
    }

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
        out.append("# HELP kvserve_http_refusals_total Requests refused or connections closed by the transport limits, by reason.\n");
        out.append("# TYPE kvserve_http_refusals_total counter\n");
        for (var e : refusals.entrySet()) {
            out.append("kvserve_http_refusals_total{reason=\"").append(e.getKey().label).append("\"} ")
                    .append(e.getValue().sum()).append('\n');
        }
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
