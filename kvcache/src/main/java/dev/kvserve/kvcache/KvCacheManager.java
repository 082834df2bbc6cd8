package dev.kvserve.kvcache;

import dev.kvserve.kvcache.evict.EvictionPolicy;
import dev.kvserve.kvcache.format.FormatBinding;
import dev.kvserve.kvcache.format.KvStorageFormat;
import dev.kvserve.kvcache.quant.CalibratedFormat;
import dev.kvserve.kvcache.quant.ModelIdentity;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * Owns the block pool of one model's KV cache: an exact budget of bytes as stored, fixed-size blocks
 * ({@code blockTokens} tokens of one layer and KV head), and the sequences allocated from it. Each
 * sequence gets its own compression policy. Thread-safe.
 */
public final class KvCacheManager implements AutoCloseable {

    public static final int DEFAULT_BLOCK_TOKENS = 16;

    private final KvGeometry geometry;
    private final ModelIdentity model;
    private final int blockTokens;
    private final BlockPool pool;
    private final RopeTable rope;
    /**
     * Bound formats by spec, most recently used last. Bounded: a server's clients may name any number
     * of distinct specs, and each binding keeps tables (calibrated ones, codebooks) alive.
     */
    private final Map<String, FormatBinding> bindings = Collections.synchronizedMap(new LinkedHashMap<>(16, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<String, FormatBinding> eldest) {
            return size() > MAX_CACHED_BINDINGS;
        }
    });
    static final int MAX_CACHED_BINDINGS = 256;
    private final Map<String, AutoCloseable> tierResources = new java.util.LinkedHashMap<>();
    private final Set<PagedSequence> open = Collections.synchronizedSet(Collections.newSetFromMap(new IdentityHashMap<>()));

    public KvCacheManager(KvGeometry geometry, long budgetBytes) {
        this(geometry, budgetBytes, DEFAULT_BLOCK_TOKENS);
    }

    public KvCacheManager(KvGeometry geometry, long budgetBytes, int blockTokens) {
        this(geometry, budgetBytes, blockTokens, null);
    }

    /** A cache for the model {@code model} identifies: calibrated policies made for another model are refused. */
    public KvCacheManager(ModelIdentity model, KvGeometry geometry, long budgetBytes) {
        this(geometry, budgetBytes, DEFAULT_BLOCK_TOKENS, model);
    }

    /**
     * @param model the loaded model's identity (architecture, shape, RoPE, weight hash), against which
     *              calibration files are checked when a calibrated policy is first opened; null when
     *              unknown, and then only the KV geometry is checked
     */
    public KvCacheManager(KvGeometry geometry, long budgetBytes, int blockTokens, ModelIdentity model) {
        if (model != null && !model.matches(geometry)) {
            throw new IllegalArgumentException("model identity " + model + " does not describe the KV geometry " + geometry);
        }
        this.model = model;
        if (blockTokens < 1 || blockTokens > 1024) {
            throw new IllegalArgumentException("block size must be 1..1024 tokens, got " + blockTokens);
        }
        this.geometry = geometry;
        this.blockTokens = blockTokens;
        this.pool = new BlockPool(budgetBytes, blockTokens);
        this.rope = new RopeTable(geometry.rope(), geometry.headDim());
    }

    public KvGeometry geometry() {
        return geometry;
    }

    /** The model this cache serves, or null when it was not given. */
    public ModelIdentity model() {
        return model;
    }

    public int blockTokens() {
        return blockTokens;
    }

    public long budgetBytes() {
        return pool.budget();
    }

    /** RoPE cos/sin shared by the sequences of this cache (attention uses it for pre-RoPE keys). */
    public RopeTable rope() {
        return rope;
    }

    /**
     * The format of {@code policy} bound to this cache's geometry (validated once, then cached). A
     * calibrated format is also checked against the model, when known: binding alone sees only the
     * geometry, and a file fitted to another model of the same shape would otherwise run silently.
     */
    public FormatBinding binding(KvCachePolicy policy) {
        KvStorageFormat format = policy.format();
        FormatBinding b = bindings.get(format.spec());
        if (b != null) return b;
        // Bound outside the map's lock: a calibrated format may read its file.
        if (model != null) CalibratedFormat.checkModel(policy, model);
        FormatBinding bound = format.bind(geometry, blockTokens);
        FormatBinding raced = bindings.putIfAbsent(format.spec(), bound);
        return raced != null ? raced : bound;
    }

    /**
     * Checks everything about {@code policy} that {@link #open} relies on, without opening a
     * sequence: the format binds to this model (and its calibration matches it), the eviction rule's
     * and selector's layers, groups and budgets fit the geometry, and the parts can run together.
     * A policy that passes opens and runs; one that does not is refused here, before admission.
     *
     * @throws IllegalArgumentException saying what does not fit
     */
    public void check(KvCachePolicy policy) {
        binding(policy);
        policy.eviction().ifPresent(e -> e.open(geometry, blockTokens));
        policy.selector().ifPresent(s -> s.open(geometry, blockTokens));
        policy.tier().prepare((key, create) -> tierResource(key, () -> create.get()));
    }

    /**
     * A new, empty sequence under {@code policy}.
     *
     * @throws IllegalArgumentException when a part of the policy does not fit this model
     */
    public PagedSequence open(KvCachePolicy policy) {
        PagedSequence s = new PagedSequence(this, pool, policy, binding(policy));
        open.add(s);
        return s;
    }

    public PagedSequence open(String policySpec) {
        return open(KvCachePolicy.parse(policySpec));
    }

    /** A sequence holding the same tokens as {@code source}, sharing its blocks until either writes. */
    public PagedSequence fork(SequenceKv source) {
        PagedSequence s = new PagedSequence(own(source));
        open.add(s);
        return s;
    }

    /**
     * A sequence holding the first {@code tokens} positions of {@code source} (prefix sharing: the
     * full blocks are shared, the block where they diverge is copied on the first write). Only for
     * policies without eviction or selection, whose state describes the whole source.
     */
    public PagedSequence fork(SequenceKv source, int tokens) {
        PagedSequence src = own(source);
        if (tokens < 0 || tokens > src.length()) {
            throw new IllegalArgumentException("prefix of " + tokens + " tokens from a sequence of " + src.length());
        }
        if (src.policy().eviction().isPresent() || src.policy().selector().isPresent()) {
            throw new IllegalArgumentException("prefix fork needs a policy without eviction or selection, got " + src.policy());
        }
        PagedSequence s = fork(src);
        try {
            s.truncate(tokens);
        } catch (RuntimeException e) {
            s.close();
            throw e;
        }
        return s;
    }

    private PagedSequence own(SequenceKv source) {
        if (!(source instanceof PagedSequence p) || !open.contains(p)) {
            throw new IllegalArgumentException("sequence does not belong to this KV cache manager (or is closed)");
        }
        return p;
    }

    /**
     * Most bytes, as stored, a sequence under {@code policy} holds while it grows to {@code tokens}
     * tokens one decode token at a time (exact for formats without eviction or sealing; an upper
     * bound otherwise). For the scheduler's admission control.
     */
    public long bytesFor(KvCachePolicy policy, int tokens) {
        return bytesFor(policy, tokens, 1);
    }

    /** As {@link #bytesFor(KvCachePolicy, int)} when the last step stores {@code stepTokens} tokens. */
    public long bytesFor(KvCachePolicy policy, int tokens, int stepTokens) {
        if (tokens < 0 || stepTokens < 0) throw new IllegalArgumentException("negative token count");
        FormatBinding b = binding(policy);
        EvictionPolicy ev = policy.eviction().orElse(null);
        boolean perToken = b.appendCodec(0, blockTokens).perToken()
                && b.sealedCodec(0, b.appendCodec(0, blockTokens)).perToken();
        long total = 0;
        for (int layer = 0; layer < geometry.layers(); layer++) {
            int blocks;
            if (ev == null) {
                blocks = (tokens + blockTokens - 1) / blockTokens;
            } else {
                int before = Math.max(0, tokens - Math.max(1, stepTokens));
                blocks = ev.maxBlocks(layer, before, Math.min(tokens, Math.max(1, stepTokens)), blockTokens, perToken);
            }
            total += geometry.kvHeads() * b.tableBytes(layer, blocks, tokens);
        }
        return total;
    }

    /** True when {@link #bytesFor} of that many tokens fits in the free budget right now. */
    public boolean canAdmit(KvCachePolicy policy, int tokens) {
        return bytesFor(policy, tokens) <= pool.budget() - pool.bytesUsed();
    }

    public KvPoolStats stats() {
        KvPoolStats s = pool.stats(open.size());
        Map<String, Long> byTier = new java.util.TreeMap<>(s.bytesByTier());
        synchronized (tierResources) {
            for (AutoCloseable r : tierResources.values()) {
                if (r instanceof dev.kvserve.kvcache.tier.TierStore store) {
                    var t = store.stats();
                    byTier.merge("host", t.hostBytes(), Long::sum);
                    byTier.merge("ssd", t.ssdBytes(), Long::sum);
                }
            }
        }
        return new KvPoolStats(s.budgetBytes(), s.bytesUsed(), s.bytesReserved(), s.blocksUsed(), s.blocksFree(), s.sideBytes(),
                s.sequences(), Map.copyOf(byTier));
    }

    /** Counters of the lower tiers (host RAM, SSD, computational storage), summed over their stores. */
    public dev.kvserve.kvcache.tier.TierStats tierStats() {
        var total = dev.kvserve.kvcache.tier.TierStats.ZERO;
        synchronized (tierResources) {
            for (AutoCloseable r : tierResources.values()) {
                if (r instanceof dev.kvserve.kvcache.tier.TierStore store) total = total.plus(store.stats());
            }
        }
        return total;
    }

    /** Preemption by swap: see {@link PagedSequence#swapOut()}. */
    public void swapOut(SequenceKv sequence) {
        own(sequence).swapOut();
    }

    /** Resume after {@link #swapOut}: see {@link PagedSequence#swapIn()}. */
    public void swapIn(SequenceKv sequence) {
        own(sequence).swapIn();
    }

    @SuppressWarnings("unchecked")
    <T extends AutoCloseable> T tierResource(String key, java.util.function.Supplier<T> create) {
        synchronized (tierResources) {
            AutoCloseable r = tierResources.get(key);
            if (r == null) {
                r = create.get();
                tierResources.put(key, r);
            }
            return (T) r;
        }
    }

    void closed(PagedSequence s) {
        open.remove(s);
    }

    /** Closes every open sequence and releases the pool's memory. */
    @Override
    public void close() {
        PagedSequence[] all;
        synchronized (open) {
            all = open.toArray(new PagedSequence[0]);
        }
        for (PagedSequence s : all) s.close();
        synchronized (tierResources) {
            for (AutoCloseable r : tierResources.values()) {
                try {
                    r.close();
                } catch (Exception e) {
                    throw new IllegalStateException("closing a KV tier store failed", e);
                }
            }
            tierResources.clear();
        }
        pool.close();
    }
}
