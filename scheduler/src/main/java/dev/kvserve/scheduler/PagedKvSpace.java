package dev.kvserve.scheduler;

import dev.kvserve.kvcache.KvBudgetExceededException;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.kvcache.KvPoolStats;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.kvcache.SequenceKv;
import dev.kvserve.kvcache.tier.OffloadTier;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * {@link KvSpace} over the paged {@link KvCacheManager}. The manager allocates blocks lazily while
 * a step stores keys and values, so a reservation here is a promise against its free bytes for the
 * coming step, not an allocation: the promises of one plan must fit together, and they lapse when
 * the next plan starts. Each promise covers the sequence's growth by {@link KvCacheManager#bytesFor}
 * plus one block per table where a step may transiently hold two (a copy-on-write of a shared block,
 * or a block being re-encoded into a format's sealed codec).
 */
final class PagedKvSpace implements KvSpace {

    private final KvCacheManager manager;
    /**
     * Parsed policies by canonical spec, most recently used last; bounded, since a server's clients
     * may name any number of distinct specs (a spec that dropped out is parsed again when used).
     */
    private final Map<String, KvCachePolicy> policies = Collections.synchronizedMap(new LinkedHashMap<>(16, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<String, KvCachePolicy> eldest) {
            return size() > 1024;
        }
    });
    /** Bytes promised to each sequence for the coming step (engine thread only). */
    private final Map<SequenceKv, Long> promised = new IdentityHashMap<>();

    PagedKvSpace(KvCacheManager manager) {
        this.manager = manager;
    }

    KvCacheManager manager() {
        return manager;
    }

    @Override
    public String canonical(String policy) {
        KvCachePolicy parsed = KvCachePolicy.parse(policy);
        // Throws when a part does not fit this model (a group size vs the head size, a layer it
        // lacks): the request is refused here, on the caller's thread, never inside a step.
        manager.check(parsed);
        String canonical = parsed.toString();
        policies.putIfAbsent(canonical, parsed);
        return canonical;
    }

    private KvCachePolicy policy(String canonical) {
        KvCachePolicy p = policies.get(canonical);
        if (p != null) return p;
        p = KvCachePolicy.parse(canonical);
        policies.putIfAbsent(canonical, p);
        return p;
    }

    @Override
    public long bytesFor(String policy, int tokens) {
        return manager.bytesFor(policy(policy), tokens);
    }

    @Override
    public long capacityBytes() {
        return manager.budgetBytes();
    }

    @Override
    public long freeBytes() {
        long free = manager.stats().bytesFree();
        for (var e : promised.entrySet()) {
            if (!((PagedSequence) e.getKey()).isClosed()) free -= e.getValue();
        }
        return free;
    }

    @Override
    public SequenceKv open(String policy) {
        return manager.open(policy(policy));
    }

    @Override
    public void settle() {
        promised.clear();
    }

    @Override
    public boolean reserve(SequenceKv kv, int tokens) {
        return reserve(kv, tokens, false);
    }

    @Override
    public boolean reserveSpilling(SequenceKv kv, int tokens) {
        return reserve(kv, tokens, true);
    }

    private boolean reserve(SequenceKv kv, int tokens, boolean spill) {
        var seq = (PagedSequence) kv;
        KvCachePolicy policy = seq.policy();
        long growth = Math.max(0, manager.bytesFor(policy, seq.length() + tokens, tokens) - seq.bytesHeld());
        long oneBlockPerTable = manager.bytesFor(policy, manager.blockTokens());
        if (seq.bytesShared() > 0) growth += oneBlockPerTable;
        if (manager.binding(policy).recentTokens() != Integer.MAX_VALUE) growth += oneBlockPerTable;
        // An offload policy makes its own room: its coldest blocks go down to host RAM / SSD now, and the
        // step brings back up, layer by layer, what it reads.
        if (spill && growth > freeBytes() && tiered(policy)) seq.spill(growth - freeBytes());
        if (growth > freeBytes()) return false;
        promised.merge(kv, growth, Long::sum);
        return true;
    }

    private static boolean tiered(KvCachePolicy policy) {
        return policy.tier() instanceof OffloadTier;
    }

    /** Bytes the lower tiers of {@code policy} can still take (host budget plus SSD budget, less what they hold). */
    private long lowerFreeBytes(KvCachePolicy policy) {
        var params = policy.tier().params().values();
        long capacity = (Long) params.get("host");
        if (!"none".equals(params.get("ssd"))) capacity += (Long) params.get("ssd_budget");
        var held = manager.tierStats();
        return Math.max(0, capacity - held.hostBytes() - held.ssdBytes());
    }

    @Override
    public boolean canSwap(String policy) {
        return tiered(policy(policy));
    }

    @Override
    public boolean swapOut(SequenceKv kv) {
        promised.remove(kv);
        try {
            manager.swapOut(kv);
            return true;
        } catch (KvBudgetExceededException | UnsupportedOperationException cannot) {
            return false;
        }
    }

    @Override
    public long swapInBytes(SequenceKv kv) {
        return ((PagedSequence) kv).bytesOffloaded();
    }

    @Override
    public void swapIn(SequenceKv kv) {
        manager.swapIn(kv);
    }

    @Override
    public long admissionBytes(String policy, int tokens, int chunk) {
        long whole = bytesFor(policy, tokens);
        KvCachePolicy parsed = policy(policy);
        if (!tiered(parsed)) return whole;
        // What the lower tiers cannot take must be resident; the first chunk (and its tail block) always is.
        long first = manager.bytesFor(parsed, Math.min(tokens, chunk + manager.blockTokens()));
        return Math.max(first, whole - lowerFreeBytes(parsed));
    }

    @Override
    public boolean canFork(String policy) {
        KvCachePolicy parsed = policy(policy);
        // Eviction and selection state describe the whole parent, not a prefix of it.
        return parsed.eviction().isEmpty() && parsed.selector().isEmpty();
    }

    @Override
    public SequenceKv fork(SequenceKv parent, int tokens) {
        KvCachePolicy policy = ((PagedSequence) parent).policy();
        if (!canFork(policy.toString())) return null;
        // Cutting the fork at a position inside a block copies that block of every table.
        if (freeBytes() < manager.bytesFor(policy, manager.blockTokens())) return null;
        try {
            return manager.fork(parent, tokens);
        } catch (KvBudgetExceededException full) {
            return null;
        }
    }

    @Override
    public Usage usage() {
        KvPoolStats stats = manager.stats();
        return new Usage(stats.blocksUsed(), stats.blocksFree(), stats.bytesUsed(), stats.bytesByTier());
    }

    @Override
    public void close() {
        promised.clear();
        manager.close();
    }
}
