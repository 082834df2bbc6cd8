package dev.kvserve.kvcache;

import dev.kvserve.kvcache.evict.EvictionPolicy;
import dev.kvserve.kvcache.format.KvStorageFormat;
import dev.kvserve.kvcache.policy.ComponentKind;
import dev.kvserve.kvcache.policy.MethodDef;
import dev.kvserve.kvcache.policy.Params;
import dev.kvserve.kvcache.policy.PolicyComponent;
import dev.kvserve.kvcache.policy.PolicyRegistry;
import dev.kvserve.kvcache.select.TokenSelector;
import dev.kvserve.kvcache.tier.TierPlacement;
import java.util.Map;
import java.util.Optional;

/**
 * A sequence's compression policy: a storage format, optionally an eviction rule and a token
 * selector, and a tier placement. Written as a spec of named, parameterised parts joined with
 * {@code +}, always in the order format, eviction, selection, tier (see {@link ComponentKind}):
 * <pre>
 *   fp16
 *   int4:group=32
 *   kivi:bits=2,residual=128
 *   int8+sink:sinks=4,window=64
 * </pre>
 * Each part appears at most once. Without a format the policy stores fp32; without a tier, blocks
 * stay in {@code primary}. Method names come from {@link PolicyRegistry}, so new methods need no
 * change here. Immutable; equal when the canonical specs are equal.
 */
public final class KvCachePolicy {

    private final KvStorageFormat format;
    private final EvictionPolicy eviction;
    private final TokenSelector selector;
    private final TierPlacement tier;
    private final String canonical;

    private KvCachePolicy(KvStorageFormat format, EvictionPolicy eviction, TokenSelector selector, TierPlacement tier) {
        this.format = format;
        this.eviction = eviction;
        this.selector = selector;
        this.tier = tier;
        StringBuilder sb = new StringBuilder(format.spec());
        if (eviction != null) sb.append('+').append(eviction.spec());
        if (selector != null) sb.append('+').append(selector.spec());
        if (!tier.spec().equals("primary")) sb.append('+').append(tier.spec());
        this.canonical = sb.toString();
    }

    /** Composes already-built parts; eviction and selector may be null, tier null means primary. */
    public static KvCachePolicy of(KvStorageFormat format, EvictionPolicy eviction, TokenSelector selector, TierPlacement tier) {
        if (format == null) throw new IllegalArgumentException("a KV policy needs a storage format");
        if (tier == null) tier = (TierPlacement) build("primary", Map.of(), ComponentKind.TIER);
        KvCachePolicy policy = new KvCachePolicy(format, eviction, selector, tier);
        format.checkComposition(policy);
        if (eviction != null) eviction.checkComposition(policy);
        if (selector != null) selector.checkComposition(policy);
        tier.checkComposition(policy);
        return policy;
    }

    /**
     * Parses a spec such as {@code int4:group=32+sink:sinks=4,window=64}.
     *
     * @throws IllegalArgumentException naming the offending part: unknown method (listing the valid
     *         ones), unknown or bad parameter (listing the method's parameters), a part out of order
     *         or repeated
     */
    public static KvCachePolicy parse(String spec) {
        return KvPolicySpec.parse(spec).build();
    }

    static KvCachePolicy build(KvPolicySpec spec) {
        PolicyComponent[] parts = new PolicyComponent[ComponentKind.values().length];
        for (KvPolicySpec.Part part : spec.parts()) parts[part.method().kind().ordinal()] = create(part.method(), part.given());
        KvStorageFormat format = parts[0] != null ? (KvStorageFormat) parts[0]
                : (KvStorageFormat) build("fp32", Map.of(), ComponentKind.FORMAT);
        return of(format, (EvictionPolicy) parts[1], (TokenSelector) parts[2], (TierPlacement) parts[3]);
    }

    private static PolicyComponent build(String name, Map<String, String> given, ComponentKind kind) {
        MethodDef def = PolicyRegistry.get(name);
        if (def.kind() != kind) throw new IllegalStateException(name + " is not a " + kind.description());
        return create(def, given);
    }

    private static PolicyComponent create(MethodDef def, Map<String, String> given) {
        Params params = Params.of(def, given);
        PolicyComponent c = def.factory().apply(params);
        Class<?> expected = switch (def.kind()) {
            case FORMAT -> KvStorageFormat.class;
            case EVICTION -> EvictionPolicy.class;
            case SELECTION -> TokenSelector.class;
            case TIER -> TierPlacement.class;
        };
        if (!expected.isInstance(c)) {
            throw new IllegalStateException("method '" + def.name() + "' is registered as a " + def.kind().description()
                    + " but builds " + c.getClass().getName());
        }
        return c;
    }

    public KvStorageFormat format() {
        return format;
    }

    public Optional<EvictionPolicy> eviction() {
        return Optional.ofNullable(eviction);
    }

    public Optional<TokenSelector> selector() {
        return Optional.ofNullable(selector);
    }

    public TierPlacement tier() {
        return tier;
    }

    /** The canonical spec: every part with all its parameters, in composition order; parses back to an equal policy. */
    @Override
    public String toString() {
        return canonical;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof KvCachePolicy p && p.canonical.equals(canonical);
    }

    @Override
    public int hashCode() {
        return canonical.hashCode();
    }
}
