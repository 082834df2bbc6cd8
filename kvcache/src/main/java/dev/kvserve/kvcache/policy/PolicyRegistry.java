package dev.kvserve.kvcache.policy;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.TreeMap;
import java.util.stream.Collectors;

/**
 * Every method name a policy spec may use. Filled from {@link KvMethodProvider}s found by the
 * {@link ServiceLoader} (the built-ins are one of them) the first time it is used, plus anything
 * {@link #register}ed.
 */
public final class PolicyRegistry {

    private static final Map<String, MethodDef> METHODS = new TreeMap<>();
    private static boolean loaded;

    private PolicyRegistry() {}

    /** Adds a method. Throws if the name is already taken by a different definition. */
    public static synchronized void register(MethodDef def) {
        ensureLoaded();
        add(def);
    }

    private static void add(MethodDef def) {
        MethodDef old = METHODS.get(def.name());
        if (old != null && old != def) {
            throw new IllegalArgumentException("KV policy method '" + def.name() + "' is already registered");
        }
        METHODS.put(def.name(), def);
    }

    private static void ensureLoaded() {
        if (loaded) return;
        loaded = true;
        for (KvMethodProvider provider : ServiceLoader.load(KvMethodProvider.class, PolicyRegistry.class.getClassLoader())) {
            for (MethodDef def : provider.methods()) add(def);
        }
    }

    /** The method of that name, or IllegalArgumentException listing every known name. */
    public static synchronized MethodDef get(String name) {
        ensureLoaded();
        MethodDef def = METHODS.get(name);
        if (def == null) {
            throw new IllegalArgumentException("unknown KV policy method '" + name + "'; valid: " + describeAll());
        }
        return def;
    }

    public static synchronized Collection<MethodDef> all() {
        ensureLoaded();
        return List.copyOf(METHODS.values());
    }

    /** e.g. {@code formats: fp16, fp32, int4:group=head, ...; eviction rules: sink:sinks=4,window=1024}. */
    public static synchronized String describeAll() {
        ensureLoaded();
        List<String> parts = new ArrayList<>();
        for (ComponentKind kind : ComponentKind.values()) {
            String names = METHODS.values().stream().filter(d -> d.kind() == kind).map(MethodDef::usage)
                    .collect(Collectors.joining(", "));
            if (!names.isEmpty()) parts.add(kind.description() + "s: " + names);
        }
        return String.join("; ", parts);
    }
}
