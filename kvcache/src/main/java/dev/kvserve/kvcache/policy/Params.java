package dev.kvserve.kvcache.policy;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * The parsed, typed parameters of one policy component, every declared parameter present (defaults
 * filled in), in declaration order. Equality is by method name and values, which makes two policies
 * parsed from differently written but equivalent specs equal.
 */
public final class Params {

    private final String method;
    private final Map<String, Object> values;
    private final Map<String, String> written;

    Params(String method, Map<String, Object> values, Map<String, String> written) {
        this.method = method;
        this.values = Collections.unmodifiableMap(new LinkedHashMap<>(values));
        this.written = Collections.unmodifiableMap(new LinkedHashMap<>(written));
    }

    /** Parses {@code key=value} pairs already split by the spec parser; see {@link PolicyRegistry}. */
    public static Params of(MethodDef def, Map<String, String> given) {
        Map<String, Object> typed = new LinkedHashMap<>();
        Map<String, String> canonical = new LinkedHashMap<>();
        for (String key : given.keySet()) {
            if (def.params().stream().noneMatch(p -> p.name().equals(key))) {
                throw new IllegalArgumentException("unknown parameter '" + key + "' for '" + def.name() + "'; valid: "
                        + def.describeParams());
            }
        }
        for (ParamSpec p : def.params()) {
            String raw = given.get(p.name());
            if (raw == null) raw = p.defaultValue();
            if (raw == null) {
                throw new IllegalArgumentException("'" + def.name() + "' needs parameter '" + p.name() + "' ("
                        + p.accepts() + "); valid: " + def.describeParams());
            }
            Object v;
            try {
                v = p.parser().apply(raw);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("bad value '" + raw + "' for parameter '" + p.name() + "' of '"
                        + def.name() + "': " + e.getMessage() + ", expected " + p.accepts());
            }
            typed.put(p.name(), v);
            canonical.put(p.name(), p.format(v));
        }
        return new Params(def.name(), typed, canonical);
    }

    public String method() {
        return method;
    }

    public int getInt(String name) {
        return (Integer) get(name);
    }

    public double getDouble(String name) {
        return (Double) get(name);
    }

    public boolean getBoolean(String name) {
        return (Boolean) get(name);
    }

    public String getString(String name) {
        return (String) get(name);
    }

    private Object get(String name) {
        Object v = values.get(name);
        if (v == null) throw new IllegalArgumentException("'" + method + "' has no parameter '" + name + "'");
        return v;
    }

    /** Parameter values as typed objects, declaration order. */
    public Map<String, Object> values() {
        return values;
    }

    /**
     * Canonical spec: method name, then every parameter in declaration order. A value written as a
     * keyword (e.g. {@code group=head}) is kept as that keyword.
     */
    public String canonical() {
        if (written.isEmpty()) return method;
        StringBuilder sb = new StringBuilder(method).append(':');
        boolean first = true;
        for (Map.Entry<String, String> e : written.entrySet()) {
            if (!first) sb.append(',');
            first = false;
            sb.append(e.getKey()).append('=').append(e.getValue());
        }
        return sb.toString();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Params p && p.method.equals(method) && p.values.equals(values);
    }

    @Override
    public int hashCode() {
        return Objects.hash(method, values);
    }

    @Override
    public String toString() {
        return canonical();
    }
}
