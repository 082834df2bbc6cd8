package dev.kvserve.http;

import dev.kvserve.kvcache.KvPolicySpec;
import dev.kvserve.kvcache.policy.MethodDef;
import dev.kvserve.kvcache.policy.PolicyRegistry;
import dev.kvserve.kvcache.tier.OffloadTier;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;

/**
 * The trust boundary between a request's {@code kv_policy} and the server's resources. A client may
 * choose how its KV cache is compressed, never a server resource: a request names either one of the
 * operator's <em>profiles</em> ({@code --kv-profile kvq3=kvquant:bits=3,calib=/srv/kvq3.kvq}), or a
 * spec that sets no {@link dev.kvserve.kvcache.policy.ParamSpec#operatorOnly() operator-only}
 * parameter (files, directories, thread counts, memory sizes) and uses only the methods the operator
 * allows ({@code --kv-allow}). An {@code offload} tier in a client's spec runs on the operator's
 * offload resources ({@code --kv-offload}), shared by every request. Everything else is refused with
 * a message that names the parameter and no server path. The command line and the embedded
 * {@code Engine} take full specs: there the caller is the operator.
 */
public final class KvPolicyGate {

    private static final Pattern PROFILE_NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,63}");

    private final Map<String, String> profiles;
    private final Set<String> allowed;
    private final Map<String, String> offload;

    /**
     * @param profiles named specs the operator offers (full specs, operator-only parameters allowed)
     * @param allowed  method names a client's own spec may use; null means every registered method
     * @param offload  the operator-only parameters of the shared {@code offload} tier (e.g.
     *                 {@code host=4GiB, ssd=/var/lib/kvserve}); empty when clients may not offload
     */
    public KvPolicyGate(Map<String, String> profiles, Set<String> allowed, Map<String, String> offload) {
        for (String name : profiles.keySet()) checkProfileName(name);
        if (allowed != null) for (String method : allowed) PolicyRegistry.get(method);
        MethodDef offloadDef = PolicyRegistry.get(OffloadTier.NAME);
        for (String key : offload.keySet()) {
            if (offloadDef.params().stream().noneMatch(p -> p.name().equals(key) && p.operatorOnly())) {
                throw new IllegalArgumentException("'" + key + "' is not an operator parameter of the offload tier; those are: "
                        + String.join(", ", offloadDef.params().stream().filter(p -> p.operatorOnly()).map(p -> p.name()).toList()));
            }
        }
        this.profiles = Collections.unmodifiableMap(new LinkedHashMap<>(profiles));
        this.allowed = allowed == null ? null : Collections.unmodifiableSet(new TreeSet<>(allowed));
        this.offload = Collections.unmodifiableMap(new LinkedHashMap<>(offload));
    }

    /** No profiles, every method, no offload: what a server gets unless its operator says more. */
    public static KvPolicyGate defaults() {
        return new KvPolicyGate(Map.of(), null, Map.of());
    }

    /** A profile name must be a short word, and not a method's name (a request could not tell them apart). */
    public static void checkProfileName(String name) {
        if (name == null || !PROFILE_NAME.matcher(name).matches()) {
            throw new IllegalArgumentException("KV profile name '" + name
                    + "' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit");
        }
        if (PolicyRegistry.all().stream().anyMatch(d -> d.name().equals(name))) {
            throw new IllegalArgumentException("KV profile name '" + name + "' is the name of a KV policy method; pick another");
        }
    }

    public Map<String, String> profiles() {
        return profiles;
    }

    /** Whether a client's spec may end in {@code +offload} (the operator gave the tier's resources). */
    public boolean offloadEnabled() {
        return !offload.isEmpty();
    }

    /** The shared offload tier clients get, as a spec part ({@code offload:host=...}); null when none. */
    public String offloadTier() {
        if (offload.isEmpty()) return null;
        return new KvPolicySpec.Part(PolicyRegistry.get(OffloadTier.NAME), offload).toString();
    }

    /** The spec the engine should run for a request's {@code kv_policy}. */
    public String resolve(String requested) {
        String profile = profiles.get(requested.trim());
        if (profile != null) return profile;
        KvPolicySpec spec = KvPolicySpec.parse(requested);
        for (KvPolicySpec.Part part : spec.parts()) {
            String method = part.method().name();
            if (allowed != null && !allowed.contains(method)) {
                throw new IllegalArgumentException("method '" + method + "' is not enabled on this server; "
                        + (allowed.isEmpty() ? "clients may not write their own KV policy" : "enabled: " + String.join(", ", allowed))
                        + profileHint());
            }
            List<String> operatorOnly = part.operatorParams();
            if (!operatorOnly.isEmpty()) {
                throw new IllegalArgumentException("parameter '" + operatorOnly.getFirst() + "' of '" + method
                        + "' names or sizes a server resource and only the server's operator sets it" + profileHint());
            }
            List<String> missing = part.missingOperatorParams();
            if (!missing.isEmpty()) {
                throw new IllegalArgumentException("'" + method + "' needs '" + missing.getFirst()
                        + "', which only the server's operator sets" + profileHint());
            }
            if (method.equals(OffloadTier.NAME)) {
                if (offload.isEmpty()) {
                    throw new IllegalArgumentException("the offload tier is not enabled on this server (the operator's --kv-offload)"
                            + profileHint());
                }
                spec = spec.replace(part.withDefaults(offload));
            }
        }
        return spec.toString();
    }

    private String profileHint() {
        return profiles.isEmpty() ? "" : "; the server's KV profiles: " + String.join(", ", profiles.keySet());
    }
}
