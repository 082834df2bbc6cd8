package dev.kvserve.kvcache;

import dev.kvserve.kvcache.policy.ComponentKind;
import dev.kvserve.kvcache.policy.MethodDef;
import dev.kvserve.kvcache.policy.ParamSpec;
import dev.kvserve.kvcache.policy.PolicyRegistry;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * A KV policy spec as written, before anything is built: its parts in order, each a registered
 * method with the parameters the spec gives it (raw text, defaults not filled in). Building a
 * policy may read files (a calibration) or start threads (an offload tier), so whoever does not
 * trust the writer of a spec — the server, for a request's {@code kv_policy} — looks at this form
 * first: which methods it names and which {@link ParamSpec#operatorOnly() operator-only}
 * parameters it sets. {@link KvCachePolicy#parse} is {@code KvPolicySpec.parse(spec).build()}.
 */
public final class KvPolicySpec {

    /** One {@code name:key=value,...} part. */
    public record Part(MethodDef method, Map<String, String> given) {
        public Part {
            given = Collections.unmodifiableMap(new LinkedHashMap<>(given));
        }

        /** The parameters written for this part that only an operator may set, in the order written. */
        public List<String> operatorParams() {
            return given.keySet().stream()
                    .filter(k -> method.params().stream().anyMatch(p -> p.name().equals(k) && p.operatorOnly()))
                    .toList();
        }

        /** Operator-only parameters the method needs and has no default for (e.g. a calibration file). */
        public List<String> missingOperatorParams() {
            return method.params().stream().filter(p -> p.operatorOnly() && p.required() && !given.containsKey(p.name()))
                    .map(ParamSpec::name).toList();
        }

        /** This part with {@code extra} parameters added; a parameter already written is kept as written. */
        public Part withDefaults(Map<String, String> extra) {
            Map<String, String> merged = new LinkedHashMap<>(extra);
            merged.putAll(given);
            return new Part(method, merged);
        }

        @Override
        public String toString() {
            if (given.isEmpty()) return method.name();
            return method.name() + ":" + given.entrySet().stream().map(e -> e.getKey() + "=" + e.getValue())
                    .collect(Collectors.joining(","));
        }
    }

    private final List<Part> parts;

    private KvPolicySpec(List<Part> parts) {
        this.parts = List.copyOf(parts);
    }

    /**
     * Splits {@code spec} into parts, checking method names, the {@code key=value} form, that no
     * parameter is given twice and that the parts come in composition order, each at most once.
     * Parameter names and values are checked by {@link #build}.
     *
     * @throws IllegalArgumentException naming the offending part
     */
    public static KvPolicySpec parse(String spec) {
        if (spec == null || spec.isBlank()) {
            throw new IllegalArgumentException("empty KV policy spec; valid methods: " + PolicyRegistry.describeAll());
        }
        List<Part> parts = new ArrayList<>();
        boolean[] seen = new boolean[ComponentKind.values().length];
        ComponentKind last = null;
        for (String raw : spec.split("\\+", -1)) {
            String part = raw.trim();
            if (part.isEmpty()) throw new IllegalArgumentException("empty part in KV policy spec '" + spec + "'");
            int colon = part.indexOf(':');
            String name = (colon < 0 ? part : part.substring(0, colon)).trim();
            MethodDef def = PolicyRegistry.get(name);
            Map<String, String> given = new LinkedHashMap<>();
            if (colon >= 0) {
                String body = part.substring(colon + 1);
                if (body.isBlank()) throw new IllegalArgumentException("'" + name + ":' has no parameters in '" + spec + "'");
                for (String kv : body.split(",", -1)) {
                    int eq = kv.indexOf('=');
                    if (eq <= 0) {
                        throw new IllegalArgumentException("parameter '" + kv.trim() + "' of '" + name
                                + "' must be written key=value; valid: " + def.describeParams());
                    }
                    String key = kv.substring(0, eq).trim();
                    if (given.put(key, kv.substring(eq + 1).trim()) != null) {
                        throw new IllegalArgumentException("parameter '" + key + "' given twice for '" + name + "'");
                    }
                }
            }
            ComponentKind kind = def.kind();
            if (seen[kind.ordinal()]) {
                throw new IllegalArgumentException("KV policy spec '" + spec + "' has two " + kind.description() + "s");
            }
            if (last != null && kind.ordinal() < last.ordinal()) {
                throw new IllegalArgumentException("KV policy spec '" + spec + "': " + kind.description() + " '" + name
                        + "' must come before the " + last.description()
                        + " (order: format + eviction rule + token selector + tier)");
            }
            seen[kind.ordinal()] = true;
            last = kind;
            parts.add(new Part(def, given));
        }
        return new KvPolicySpec(parts);
    }

    public List<Part> parts() {
        return parts;
    }

    /** This spec with {@code part} in place of the part of the same method. */
    public KvPolicySpec replace(Part part) {
        List<Part> out = new ArrayList<>(parts);
        out.replaceAll(p -> p.method().name().equals(part.method().name()) ? part : p);
        return new KvPolicySpec(out);
    }

    /**
     * Builds the policy: parses every parameter (defaults filled in) and creates each part, which
     * may read the files and check the settings the parameters name.
     *
     * @throws IllegalArgumentException naming an unknown or bad parameter, or parts that cannot work together
     */
    public KvCachePolicy build() {
        return KvCachePolicy.build(this);
    }

    /** The spec as written (parameters in the order given, defaults not filled in). */
    @Override
    public String toString() {
        return parts.stream().map(Part::toString).collect(Collectors.joining("+"));
    }
}
