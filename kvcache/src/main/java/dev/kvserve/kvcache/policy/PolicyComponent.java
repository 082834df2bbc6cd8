package dev.kvserve.kvcache.policy;

/** One named, parameterised part of a compression policy (a format, eviction rule, selector or tier). */
public interface PolicyComponent {

    /** The parameters this component was created from (names, values, defaults filled in). */
    Params params();

    /** Canonical spec of this component alone, e.g. {@code int4:group=32}. */
    default String spec() {
        return params().canonical();
    }
}
