package dev.kvserve.scheduler;

import dev.kvserve.kvcache.KvBudgetExceededException;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.kvcache.KvPoolStats;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.kvcache.SequenceKv;
import java.util.IdentityHashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

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
    private final Map<String, KvCachePolicy> policies = new ConcurrentHashMap<>();
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
        manager.binding(parsed);   // throws when the policy does not fit this model (e.g. a group size vs the head size)
        String canonical = parsed.toString();
        policies.putIfAbsent(canonical, parsed);
        return canonical;
    }

    private KvCachePolicy policy(String canonical) {
        return policies.computeIfAbsent(canonical, KvCachePolicy::parse);
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
        var seq = (PagedSequence) kv;
        KvCachePolicy policy = seq.policy();
        long growth = Math.max(0, manager.bytesFor(policy, seq.length() + tokens, tokens) - seq.bytesHeld());
        long oneBlockPerTable = manager.bytesFor(policy, manager.blockTokens());
        if (seq.bytesShared() > 0) growth += oneBlockPerTable;
        if (manager.binding(policy).recentTokens() != Integer.MAX_VALUE) growth += oneBlockPerTable;
        if (growth > freeBytes()) return false;
        promised.merge(kv, growth, Long::sum);
        return true;
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
