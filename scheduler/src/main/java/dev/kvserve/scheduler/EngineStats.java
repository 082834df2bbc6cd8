package dev.kvserve.scheduler;

import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * A consistent snapshot of the engine for monitoring (/metrics).
 *
 * @param running              sequences holding a KV cache (prefilling or decoding)
 * @param waiting              sequences queued, new or preempted
 * @param kvBlocksUsed         pool blocks held
 * @param kvBlocksFree         pool blocks available
 * @param kvBytesUsed          bytes held, as stored (compressed)
 * @param kvBytesCapacity      the pool's byte budget
 * @param kvBytesByTier        bytes held per storage tier
 * @param kvTokens             token positions written by the running sequences (positions an eviction
 *                             policy dropped included, shared prefixes counted once per sequence)
 * @param kvFp16Bytes          bytes those positions would take in an uncompressed fp16 cache, so the
 *                             compression ratio credits quantization and eviction alike
 * @param promptTokensTotal    prompt tokens admitted since start (recomputation after preemption not counted)
 * @param generationTokensTotal tokens generated since start
 * @param requestsTotal        requests finished since start
 * @param preemptionsTotal     preemptions since start
 * @param timeToFirstToken     seconds from submission to the first token
 * @param interTokenLatency    seconds between consecutive tokens of one request
 */
public record EngineStats(
        int running,
        int waiting,
        long kvBlocksUsed,
        long kvBlocksFree,
        long kvBytesUsed,
        long kvBytesCapacity,
        Map<String, Long> kvBytesByTier,
        long kvTokens,
        long kvFp16Bytes,
        long promptTokensTotal,
        long generationTokensTotal,
        long requestsTotal,
        long preemptionsTotal,
        Histogram.Snapshot timeToFirstToken,
        Histogram.Snapshot interTokenLatency) {

    public EngineStats {
        kvBytesByTier = Map.copyOf(kvBytesByTier);
    }

    /** fp16 bytes over stored bytes for what is cached now: 4.0 for a 4-bit cache; 1.0 when nothing is cached. */
    public double compressionRatio() {
        return kvBytesUsed == 0 ? 1.0 : (double) kvFp16Bytes / kvBytesUsed;
    }

    /** The stats in the Prometheus text exposition format, metric names prefixed {@code kvserve_}. */
    public String toPrometheus() {
        var out = new StringBuilder();
        gauge(out, "kvserve_requests_running", "Sequences holding a KV cache.", running);
        gauge(out, "kvserve_requests_waiting", "Sequences waiting for admission.", waiting);
        gauge(out, "kvserve_kv_blocks_used", "KV pool blocks in use.", kvBlocksUsed);
        gauge(out, "kvserve_kv_blocks_free", "KV pool blocks free.", kvBlocksFree);
        gauge(out, "kvserve_kv_bytes_capacity", "KV pool byte budget.", kvBytesCapacity);
        out.append("# HELP kvserve_kv_bytes_used KV bytes held, as stored.\n# TYPE kvserve_kv_bytes_used gauge\n");
        for (var tier : new TreeMap<>(kvBytesByTier).entrySet()) {
            out.append("kvserve_kv_bytes_used{tier=\"").append(tier.getKey()).append("\"} ").append(tier.getValue()).append('\n');
        }
        gauge(out, "kvserve_kv_compression_ratio", "fp16 bytes over stored bytes of the cached tokens.", compressionRatio());
        counter(out, "kvserve_prompt_tokens_total", "Prompt tokens admitted.", promptTokensTotal);
        counter(out, "kvserve_generation_tokens_total", "Tokens generated.", generationTokensTotal);
        counter(out, "kvserve_requests_total", "Requests finished.", requestsTotal);
        counter(out, "kvserve_preemptions_total", "Sequences preempted for KV space.", preemptionsTotal);
        timeToFirstToken.writePrometheus(out, "kvserve_time_to_first_token_seconds", "Time from submission to the first token.");
        interTokenLatency.writePrometheus(out, "kvserve_inter_token_latency_seconds", "Time between consecutive tokens of a request.");
        return out.toString();
    }

    private static void gauge(StringBuilder out, String name, String help, double value) {
        out.append("# HELP ").append(name).append(' ').append(help).append('\n');
        out.append("# TYPE ").append(name).append(" gauge\n");
        out.append(name).append(' ').append(format(value)).append('\n');
    }

    private static void counter(StringBuilder out, String name, String help, long value) {
        out.append("# HELP ").append(name).append(' ').append(help).append('\n');
        out.append("# TYPE ").append(name).append(" counter\n");
        out.append(name).append(' ').append(value).append('\n');
    }

    private static String format(double value) {
        return value == Math.rint(value) && Math.abs(value) < 1e15
                ? Long.toString((long) value) : String.format(Locale.ROOT, "%.6g", value);
    }
}
