package dev.kvserve.kvcache.policy;

/**
 * The parts a {@link dev.kvserve.kvcache.KvCachePolicy} is composed of, in composition order: a spec
 * names them joined with {@code +} in exactly this order ({@code format+eviction+selection+tier}).
 * Each kind appears at most once; a missing format means {@code fp32}, a missing tier {@code primary}.
 *
 * <p>Why this order: the format decides how every stored token is encoded, the eviction rule decides
 * which stored tokens stay (and merges what leaves), the selector decides which of the staying tokens
 * a decode step reads, and the tier decides where the stored blocks live. Each later part works on
 * what the earlier ones produced.
 */
public enum ComponentKind {
    FORMAT("storage format"),
    EVICTION("eviction rule"),
    SELECTION("token selector"),
    TIER("tier placement");

    private final String description;

    ComponentKind(String description) {
        this.description = description;
    }

    public String description() {
        return description;
    }
}
