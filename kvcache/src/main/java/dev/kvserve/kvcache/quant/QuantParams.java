package dev.kvserve.kvcache.quant;

import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * The {@code key=value,key=value} part of a policy spec such as {@code kvquant:bits=4,outliers=0.01},
 * with typed getters that name the offending key and value when something is wrong. Unknown keys are
 * refused, so that a misspelt option is never silently ignored.
 */
public final class QuantParams {

    private final String method;
    private final Map<String, String> values;

    private QuantParams(String method, Map<String, String> values) {
        this.method = method;
        this.values = values;
    }

    /** Parses {@code params} (may be empty or null) for {@code method}; only {@code allowed} keys are accepted. */
    public static QuantParams parse(String method, String params, Set<String> allowed) {
        Map<String, String> map = new LinkedHashMap<>();
        if (params != null && !params.isBlank()) {
            for (String part : params.split(",")) {
                String p = part.trim();
                if (p.isEmpty()) continue;
                int eq = p.indexOf('=');
                if (eq <= 0 || eq == p.length() - 1) {
                    throw new IllegalArgumentException(method + ": option '" + p + "' is not of the form key=value");
                }
                String key = p.substring(0, eq).trim().toLowerCase(Locale.ROOT);
                String value = p.substring(eq + 1).trim();
                if (!allowed.contains(key)) {
                    throw new IllegalArgumentException(method + ": unknown option '" + key + "' (known: "
                            + String.join(", ", allowed.stream().sorted().toList()) + ")");
                }
                if (map.put(key, value) != null) throw new IllegalArgumentException(method + ": option '" + key + "' given twice");
            }
        }
        return new QuantParams(method, map);
    }

    public static QuantParams of(String method, Map<String, String> params, Set<String> allowed) {
        StringBuilder sb = new StringBuilder();
        params.forEach((k, v) -> sb.append(sb.isEmpty() ? "" : ",").append(k).append('=').append(v));
        return parse(method, sb.toString(), allowed);
    }

    public boolean has(String key) {
        return values.containsKey(key);
    }

    public String string(String key, String dflt) {
        return values.getOrDefault(key, dflt);
    }

    public int integer(String key, int dflt, int min, int max) {
        String v = values.get(key);
        if (v == null) return dflt;
        int x;
        try {
            x = Integer.parseInt(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(method + ": option " + key + "=" + v + " is not an integer");
        }
        if (x < min || x > max) {
            throw new IllegalArgumentException(method + ": option " + key + "=" + v + " is out of range [" + min + ", " + max + "]");
        }
        return x;
    }

    public double real(String key, double dflt, double min, double max) {
        String v = values.get(key);
        if (v == null) return dflt;
        double x;
        try {
            x = Double.parseDouble(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(method + ": option " + key + "=" + v + " is not a number");
        }
        if (!(x >= min && x <= max)) {
            throw new IllegalArgumentException(method + ": option " + key + "=" + v + " is out of range [" + min + ", " + max + "]");
        }
        return x;
    }

    public boolean bool(String key, boolean dflt) {
        String v = values.get(key);
        if (v == null) return dflt;
        return switch (v.toLowerCase(Locale.ROOT)) {
            case "true", "1", "yes", "on" -> true;
            case "false", "0", "no", "off" -> false;
            default -> throw new IllegalArgumentException(method + ": option " + key + "=" + v + " is not true/false");
        };
    }

    public String choice(String key, String dflt, String... options) {
        String v = values.get(key);
        if (v == null) return dflt;
        for (String o : options) if (o.equalsIgnoreCase(v)) return o;
        throw new IllegalArgumentException(method + ": option " + key + "=" + v + " must be one of " + String.join("|", options));
    }
}
