package dev.kvserve.scheduler;

import dev.kvserve.kvcache.BlockLostException;
import dev.kvserve.kvcache.KvBudgetExceededException;
import dev.kvserve.kvcache.SequenceKv;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A small but real paged pool for scheduler tests: fixed-token blocks whose byte size depends on
 * the policy (so a "compressed" policy fits more tokens in the same byte budget), reference-counted
 * so forks share whole blocks, and strict: writing past reserved blocks throws. Policies marked
 * {@link #swappable} have an unbounded lower tier: swapped-out blocks keep their contents but leave the
 * pool, and writing into one that was not swapped back in throws.
 */
final class BlockPool implements KvSpace {

    final int blockTokens;
    final long capacity;
    private final Map<String, Integer> bytesPerToken;
    private long used;
    private long blocksUsed;
    final List<Cache> open = new ArrayList<>();
    private final Set<String> swappable = new HashSet<>();
    private final Set<String> unopenable = new HashSet<>();
    /** The next swap-in finds a block's lower copy corrupt. */
    boolean loseNextSwapIn;
    int swapOuts, swapIns;

    BlockPool(int blockTokens, long capacity, Map<String, Integer> bytesPerToken) {
        this.blockTokens = blockTokens;
        this.capacity = capacity;
        this.bytesPerToken = Map.copyOf(bytesPerToken);
    }

    private final class Block {
        final long bytes;
        /** What the "model" stored at each position, so forks and recomputation can be checked. */
        final int[] tokens = new int[blockTokens];
        int refs = 1;
        boolean resident = true;

        Block(long bytes) {
            this.bytes = bytes;
            used += bytes;
            blocksUsed++;
        }

        void release() {
            if (--refs == 0 && resident) {
                used -= bytes;
                blocksUsed--;
            }
        }
    }

    final class Cache implements SequenceKv {
        final String policy;
        final List<Block> blocks = new ArrayList<>();
        int length;
        boolean closed;

        Cache(String policy) {
            this.policy = policy;
            open.add(this);
        }

        @Override public int length() { return length; }

        @Override public void advance(int tokens) {
            if (closed) throw new IllegalStateException("advance on a closed cache");
            if (length + tokens > blocks.size() * blockTokens) {
                throw new IllegalStateException("write past reserved blocks: " + (length + tokens) + " > " + blocks.size() * blockTokens);
            }
            length += tokens;
        }

        /** Stores a step's tokens at positions length.. (what a real model's K/V would be), then advances. */
        void write(int[] stepTokens) {
            if (length + stepTokens.length > blocks.size() * blockTokens) {
                throw new IllegalStateException("write past reserved blocks: " + (length + stepTokens.length) + " > " + blocks.size() * blockTokens);
            }
            for (int i = 0; i < stepTokens.length; i++) {
                Block block = blocks.get((length + i) / blockTokens);
                if (block.refs > 1) throw new IllegalStateException("write into a block shared with another sequence");
                if (!block.resident) throw new IllegalStateException("write into a swapped-out block");
                block.tokens[(length + i) % blockTokens] = stepTokens[i];
            }
            advance(stepTokens.length);
        }

        int[] history() {
            int[] out = new int[length];
            for (int i = 0; i < length; i++) out[i] = blocks.get(i / blockTokens).tokens[i % blockTokens];
            return out;
        }

        @Override public long bytesHeld() {
            long b = 0;
            for (Block block : blocks) b += block.bytes;
            return b;
        }

        @Override public void close() {
            if (closed) return;
            closed = true;
            blocks.forEach(Block::release);
            blocks.clear();
            open.remove(this);
        }
    }

    /** Opening a cache under {@code policy} throws. */
    BlockPool unopenable(String policy) {
        unopenable.add(policy);
        return this;
    }

    BlockPool swappable(String policy) {
        swappable.add(policy);
        return this;
    }

    @Override public boolean canSwap(String policy) { return swappable.contains(policy); }

    @Override public boolean swapOut(SequenceKv kv) {
        Cache cache = (Cache) kv;
        if (!swappable.contains(cache.policy)) return false;
        for (Block b : cache.blocks) {
            if (!b.resident || b.refs > 1) continue;
            b.resident = false;
            used -= b.bytes;
            blocksUsed--;
        }
        swapOuts++;
        return true;
    }

    @Override public long swapInBytes(SequenceKv kv) {
        long n = 0;
        for (Block b : ((Cache) kv).blocks) if (!b.resident) n += b.bytes;
        return n;
    }

    @Override public void swapIn(SequenceKv kv) {
        swapIns++;
        if (loseNextSwapIn) {
            loseNextSwapIn = false;
            throw new BlockLostException("test: corrupt lower copy", blockTokens);
        }
        long need = swapInBytes(kv);
        if (need > freeBytes()) throw new KvBudgetExceededException(need, freeBytes(), capacity);
        for (Block b : ((Cache) kv).blocks) {
            if (b.resident) continue;
            b.resident = true;
            used += b.bytes;
            blocksUsed++;
        }
    }

    private long blockBytes(String policy) {
        return (long) blockTokens * bytesPerToken.get(policy);
    }

    long usedBytes() { return used; }

    long blocksUsed() { return blocksUsed; }

    @Override public String canonical(String policy) {
        if (!bytesPerToken.containsKey(policy.trim())) throw new IllegalArgumentException("unknown KV policy '" + policy + "'");
        return policy.trim();
    }

    @Override public long bytesFor(String policy, int tokens) {
        return Math.ceilDiv(tokens, blockTokens) * blockBytes(policy);
    }

    @Override public long capacityBytes() { return capacity; }

    @Override public long freeBytes() { return capacity - used; }

    @Override public SequenceKv open(String policy) {
        // as a policy part that cannot be bound to the model throws when the cache opens
        if (unopenable.contains(policy)) throw new IllegalArgumentException("policy " + policy + " cannot open a cache here");
        return new Cache(canonical(policy));
    }

    @Override public boolean reserve(SequenceKv kv, int tokens) {
        Cache cache = (Cache) kv;
        int need = Math.ceilDiv(cache.length + tokens, blockTokens) - cache.blocks.size();
        if (need <= 0) return true;
        if (need * blockBytes(cache.policy) > freeBytes()) return false;
        for (int i = 0; i < need; i++) cache.blocks.add(new Block(blockBytes(cache.policy)));
        return true;
    }

    @Override public boolean canFork(String policy) { return true; }

    /** Shares whole blocks only, so neither side ever writes into a shared block. */
    @Override public SequenceKv fork(SequenceKv parent, int tokens) {
        Cache from = (Cache) parent;
        int whole = Math.min(tokens, from.length) / blockTokens;
        if (whole == 0) return null;
        Cache child = new Cache(from.policy);
        for (int i = 0; i < whole; i++) {
            Block block = from.blocks.get(i);
            block.refs++;
            child.blocks.add(block);
        }
        child.length = whole * blockTokens;
        return child;
    }

    @Override public Usage usage() {
        return new Usage(blocksUsed, capacity / blockBytes(bytesPerToken.keySet().iterator().next()) - blocksUsed,
                used, Map.of("host", used));
    }

    @Override public void close() {
        for (Cache cache : List.copyOf(open)) cache.close();
    }
}
