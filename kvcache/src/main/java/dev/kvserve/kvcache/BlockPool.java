package dev.kvserve.kvcache;

import dev.kvserve.kvcache.format.BlockCodec;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Off-heap memory for blocks, under an exact byte budget counted in bytes as stored (each block's
 * {@link BlockCodec#blockBytes()}, plus side allocations). Blocks of one size live in slabs of one
 * {@link Arena} each; a slab whose blocks are all free is closed (its memory returned to the OS) unless
 * it is the last slab of its size, so memory reserved stays close to memory used when formats mix.
 * All methods are synchronized: sequences allocate from several threads.
 */
final class BlockPool implements AutoCloseable {

    static final long SLAB_TARGET_BYTES = 1 << 20;
    static final String PRIMARY = "primary";

    private final long budget;
    private final int blockTokens;
    private final Map<Long, SizeClass> classes = new HashMap<>();
    private final Map<String, Long> bytesByTier = new TreeMap<>();
    private long bytesUsed;
    private long sideBytes;
    private long reserved;
    private long blocksUsed;
    private long blocksFree;
    private boolean closed;

    BlockPool(long budget, int blockTokens) {
        if (budget <= 0) throw new IllegalArgumentException("KV cache budget must be positive, got " + budget);
        this.budget = budget;
        this.blockTokens = blockTokens;
    }

    static final class Slab {
        final SizeClass owner;
        final Arena arena;
        final MemorySegment memory;
        final int capacity;
        final long stride;
        final int slabIndex;
        int liveBlocks;
        boolean closed;

        Slab(SizeClass owner, int slabIndex, int capacity, long stride) {
            this.owner = owner;
            this.slabIndex = slabIndex;
            this.arena = Arena.ofShared();
            this.capacity = capacity;
            this.stride = stride;
            this.memory = arena.allocate(stride * capacity, 64);
        }
    }

    static final class SizeClass {
        final long bytes;
        final long stride;
        final List<Slab> slabs = new ArrayList<>();
        final ArrayDeque<long[]> free = new ArrayDeque<>();
        int openSlabs;

        SizeClass(long bytes) {
            this.bytes = bytes;
            this.stride = (bytes + 15) & ~15L;
        }
    }

    synchronized Block allocate(BlockCodec codec, String tier) {
        checkOpen();
        long bytes = codec.blockBytes();
        if (bytes <= 0) throw new IllegalStateException("codec " + codec.name() + " declares " + bytes + " bytes per block");
        Block b = new Block(null, 0, null, codec, blockTokens, tier);
        attach(b);
        return b;
    }

    /** Gives {@code b} pool memory (zeroed) for its bytes; budget-checked. */
    synchronized void attach(Block b) {
        checkOpen();
        if (b.segment != null) throw new IllegalStateException("block is already resident");
        long bytes = b.bytes;
        reserveBudget(bytes);
        SizeClass sc = classes.computeIfAbsent(bytes, SizeClass::new);
        Slab slab;
        int index;
        long[] ref = popFree(sc);
        if (ref == null) {
            int capacity = (int) Math.max(1, Math.min(1024, SLAB_TARGET_BYTES / sc.stride));
            slab = new Slab(sc, sc.slabs.size(), capacity, sc.stride);
            sc.slabs.add(slab);
            sc.openSlabs++;
            reserved += slab.stride * capacity;
            for (int i = capacity - 1; i >= 1; i--) sc.free.push(new long[] {sc.slabs.size() - 1, i});
            blocksFree += capacity - 1;
            index = 0;
        } else {
            slab = sc.slabs.get((int) ref[0]);
            index = (int) ref[1];
            blocksFree--;
        }
        slab.liveBlocks++;
        MemorySegment seg = slab.memory.asSlice(index * slab.stride, bytes);
        seg.fill((byte) 0);
        bytesUsed += bytes;
        bytesByTier.merge(b.tier, bytes, Long::sum);
        blocksUsed++;
        b.slab = slab;
        b.index = index;
        b.segment = seg;
    }

    /** Returns {@code b}'s pool memory while the block stays referenced (its bytes now live in a lower tier). */
    synchronized void detach(Block b) {
        if (b.segment == null) throw new IllegalStateException("block is not resident");
        freeMemory(b);
    }

    private void freeMemory(Block b) {
        bytesUsed -= b.bytes;
        bytesByTier.merge(b.tier, -b.bytes, Long::sum);
        blocksUsed--;
        Slab slab = b.slab;
        SizeClass sc = slab.owner;
        slab.liveBlocks--;
        sc.free.push(new long[] {slab.slabIndex, b.index});
        blocksFree++;
        b.segment = null;
        b.slab = null;
        if (slab.liveBlocks == 0 && sc.openSlabs > 1) {
            slab.closed = true;
            sc.openSlabs--;
            blocksFree -= slab.capacity;
            reserved -= slab.stride * slab.capacity;
            slab.arena.close();
        }
    }

    private long[] popFree(SizeClass sc) {
        while (!sc.free.isEmpty()) {
            long[] ref = sc.free.pop();
            if (!sc.slabs.get((int) ref[0]).closed) return ref;
        }
        return null;
    }

    /** Drops one reference; the block's memory (and any lower-tier copy) is freed when none are left. */
    synchronized void release(Block b) {
        if (b.refCount <= 0) throw new IllegalStateException("block released more often than referenced (double free)");
        if (--b.refCount > 0) return;
        if (b.stored != null) {
            b.stored.free();
            b.stored = null;
        }
        if (b.segment != null && !closed) freeMemory(b);
    }

    synchronized void retain(Block b) {
        if (b.refCount <= 0) throw new IllegalStateException("retaining a freed block");
        b.refCount++;
    }

    /** Side memory: a separately allocated segment counted in the budget. */
    synchronized Arena allocateSide(long bytes) {
        checkOpen();
        reserveBudget(bytes);
        bytesUsed += bytes;
        sideBytes += bytes;
        bytesByTier.merge(PRIMARY, bytes, Long::sum);
        reserved += bytes;
        return Arena.ofShared();
    }

    synchronized void freeSide(long bytes, Arena arena) {
        bytesUsed -= bytes;
        sideBytes -= bytes;
        bytesByTier.merge(PRIMARY, -bytes, Long::sum);
        reserved -= bytes;
        arena.close();
    }

    private void reserveBudget(long bytes) {
        if (bytesUsed + bytes > budget) throw new KvBudgetExceededException(bytes, budget - bytesUsed, budget);
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("KV cache manager is closed");
    }

    synchronized long bytesUsed() {
        return bytesUsed;
    }

    long budget() {
        return budget;
    }

    synchronized KvPoolStats stats(int sequences) {
        return new KvPoolStats(budget, bytesUsed, reserved, blocksUsed, blocksFree, sideBytes, sequences, Map.copyOf(bytesByTier));
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        for (SizeClass sc : classes.values()) {
            for (Slab s : sc.slabs) {
                if (!s.closed) {
                    s.closed = true;
                    s.arena.close();
                }
            }
        }
    }
}
