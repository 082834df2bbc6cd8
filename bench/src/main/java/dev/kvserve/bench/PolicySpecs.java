package dev.kvserve.bench;

import dev.kvserve.kvcache.KvCachePolicy;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;

/**
 * Splits a {@code --kv} list of KV-cache policy specs. Commas separate specs, but a spec's own
 * parameters are comma-separated too ({@code sink:sinks=4,window=64}). The two never collide: a
 * parameter is always {@code key=value}, a policy part never has {@code =} before its {@code :} or
 * {@code +}. So a comma-separated piece whose head (the text before its first {@code :} or {@code +})
 * contains {@code =} continues the spec before it; any other piece starts a new spec:
 * <pre>
 *   fp16,int8,sink:sinks=4,window=64   →  fp16 | int8 | sink:sinks=4,window=64
 *   int4:group=8+sink:sinks=4,window=64,kivi  →  int4:group=8+sink:sinks=4,window=64 | kivi
 * </pre>
 * Repeating the option ({@code --kv a --kv b}) works as well. An unknown method name then fails in
 * {@link KvCachePolicy#parse} with the list of valid names, rather than as a malformed parameter.
 */
public final class PolicySpecs {

    private PolicySpecs() {}

    /** The specs of one or more {@code --kv} values, in order, each trimmed. */
    public static List<String> split(List<String> options) {
        List<String> specs = new ArrayList<>();
        for (String option : options) specs.addAll(split(option));
        if (specs.isEmpty()) throw new IllegalArgumentException("no KV policy given (--kv)");
        return specs;
    }

    public static List<String> split(String option) {
        if (option == null || option.isBlank()) throw new IllegalArgumentException("empty --kv value");
        List<String> specs = new ArrayList<>();
        StringBuilder current = null;
        for (String raw : option.split(",", -1)) {
            String piece = raw.trim();
            if (piece.isEmpty()) throw new IllegalArgumentException("empty entry in --kv list '" + option + "'");
            if (isParameter(piece)) {
                if (current == null) {
                    throw new IllegalArgumentException("--kv list '" + option + "' starts with parameter '" + piece
                            + "' that belongs to no policy");
                }
                String lastPart = current.substring(current.lastIndexOf("+") + 1);
                if (lastPart.indexOf(':') < 0) {
                    throw new IllegalArgumentException("--kv list '" + option + "': parameter '" + piece + "' follows '"
                            + lastPart + "', which has no parameter list (write " + lastPart + ":" + piece + ")");
                }
                current.append(',').append(piece);
            } else {
                if (current != null) specs.add(current.toString());
                current = new StringBuilder(piece);
            }
        }
        specs.add(current.toString());
        return specs;
    }

    /** Parses every spec; duplicates (same canonical policy) are refused, they would only repeat a row. */
    public static List<KvCachePolicy> parse(List<String> options) {
        LinkedHashSet<KvCachePolicy> policies = new LinkedHashSet<>();
        for (String spec : split(options)) {
            KvCachePolicy p = KvCachePolicy.parse(spec);
            if (!policies.add(p)) throw new IllegalArgumentException("KV policy " + p + " is listed twice in --kv");
        }
        return List.copyOf(policies);
    }

    private static boolean isParameter(String piece) {
        int end = piece.length();
        int colon = piece.indexOf(':'), plus = piece.indexOf('+');
        if (colon >= 0) end = colon;
        if (plus >= 0) end = Math.min(end, plus);
        return piece.substring(0, end).contains("=");
    }
}
