package dev.kvserve.kvcache.policy;

/** One named, parameterised part of a compression policy (a format, eviction rule, selector or tier). */
public interface PolicyComponent {

    /** The parameters this component was created from (names, values, defaults filled in). */
    Params params();

    /** Canonical spec of this component alone, e.g. {@code int4:group=32}. */
    default String spec() {
        return params().canonical();
    }

    /**
     * Refuses, when the policy is composed, other parts this one cannot run beside (AQUA-KV's
     * cross-layer predictors and an eviction rule, say), so that such a policy is refused where it
     * is parsed rather than failing in a step.
     *
     * @throws IllegalArgumentException saying which parts conflict and why
     */
    default void checkComposition(dev.kvserve.kvcache.KvCachePolicy policy) {}
}
