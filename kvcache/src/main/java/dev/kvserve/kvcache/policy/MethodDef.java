package dev.kvserve.kvcache.policy;

import java.util.List;
import java.util.function.Function;
import java.util.stream.Collectors;

/**
 * A registered compression method: its spec name, which part of a policy it is, its parameters and
 * how to build it from parsed parameters. Later methods (kvquant, cq, aqua, l2, hashevict, d2o,
 * clusterkv, h2o, snapkv, quest, offload) each add one of these; the parser never changes.
 *
 * @param name    spec name, lower case ({@code int4}, {@code sink}, ...)
 * @param kind    which part of the policy it fills; the factory must return the matching type
 *                ({@code KvStorageFormat}, {@code EvictionPolicy}, {@code TokenSelector}, {@code TierPlacement})
 * @param summary one line shown in error messages and help
 * @param params  declared parameters in canonical order
 * @param factory builds the component; may throw IllegalArgumentException for inconsistent parameters
 */
public record MethodDef(String name, ComponentKind kind, String summary, List<ParamSpec> params,
                        Function<Params, ? extends PolicyComponent> factory) {

    public MethodDef {
        if (name == null || !name.matches("[a-z][a-z0-9_-]*")) {
            throw new IllegalArgumentException("method name must be lower case letters, digits, '-' or '_': " + name);
        }
        params = List.copyOf(params);
        long distinct = params.stream().map(ParamSpec::name).distinct().count();
        if (distinct != params.size()) throw new IllegalArgumentException("duplicate parameter in " + name);
    }

    /** e.g. {@code bits (one of [2, 4], default 2), group (an integer >= 1, default 32)}. */
    public String describeParams() {
        if (params.isEmpty()) return "(none)";
        return params.stream()
                .map(p -> p.name() + " (" + p.accepts() + (p.required() ? ", required" : ", default " + p.defaultValue()) + ")")
                .collect(Collectors.joining(", "));
    }

    public String usage() {
        if (params.isEmpty()) return name;
        return name + ":" + params.stream().map(p -> p.name() + "=" + (p.required() ? "?" : p.defaultValue()))
                .collect(Collectors.joining(","));
    }
}
