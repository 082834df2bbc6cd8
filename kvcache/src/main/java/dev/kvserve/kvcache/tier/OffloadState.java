package dev.kvserve.kvcache.tier;

import dev.kvserve.kvcache.Block;
import dev.kvserve.kvcache.BlockTable;
import dev.kvserve.kvcache.KvBudgetExceededException;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.select.Selection;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;

/**
 * One sequence under an offload tier. Blocks live in the primary pool, host RAM or the SSD; a block
 * moved down keeps its lower copy when it comes back up (blocks are immutable once full), so moving it
 * down again costs nothing until it is written. Per layer it remembers which blocks the last step
 * read; when layer {@code l} starts, the blocks layer {@code l+1} read last time (layer 0 of the next
 * step after the last layer) are prefetched from the SSD on the I/O threads while layer {@code l}
 * computes (consecutive decode steps select heavily overlapping blocks; ESPN, methods.md §9.4).
 * Shared blocks (forks) stay resident: another sequence may be reading them on another thread.
 */
final class OffloadState implements TierState {

    private final OffloadTier config;
    private final TierContext ctx;
    private final TierStore store;
    private final KvGeometry geometry;
    private final List<List<Block>> lastRead;
    private final Set<Block> pinned = Collections.newSetFromMap(new IdentityHashMap<>());
    private long clock;

    OffloadState(OffloadTier config, TierContext ctx, TierStore store) {
        this.config = config;
        this.ctx = ctx;
        this.store = store;
        this.geometry = ctx.geometry();
        this.lastRead = new ArrayList<>();
        for (int l = 0; l < geometry.layers(); l++) lastRead.add(List.of());
    }

    @Override
    public TierState fork() {
        throw new IllegalStateException("offload tier state forks with the fork's tier context");
    }

    @Override
    public TierState fork(TierContext context) {
        return new OffloadState(config, context, store);
    }

    @Override
    public void beforeAttention(LayerKv kv, Selection selection) {
        int layer = kv.layer();
        clock++;
        pinned.clear();
        List<Block> needed = blocksRead(layer, selection);
        pinned.addAll(needed);
        lastRead.set(layer, needed);
        boolean csd = config.csd;
        for (Block b : needed) {
            if (!b.resident()) {
                // with a computational-storage device, SSD blocks are attended where they lie
                if (csd && "ssd".equals(b.stored().tier())) continue;
                promote(b);
            }
            ctx.touch(b, clock);
        }
        // Issued after this layer's blocks came up: making room for them may have just moved the next
        // layer's blocks down (always so when the pool holds about one layer of a two-layer model), and
        // a resident block is not prefetched.
        if (config.prefetch) prefetch((layer + 1) % geometry.layers());
    }

    /** The blocks of {@code layer} that slots of {@code selection} (all, when null) fall in. */
    private List<Block> blocksRead(int layer, Selection selection) {
        List<Block> out = new ArrayList<>();
        int bt = ctx.blockTokens(), g = geometry.groupSize();
        for (int h = 0; h < geometry.kvHeads(); h++) {
            BlockTable t = ctx.table(layer, h);
            if (selection == null) {
                for (int i = 0; i < t.blockCount(); i++) out.add(t.block(i));
                continue;
            }
            boolean[] take = new boolean[t.blockCount()];
            for (int j = 0; j < g; j++) {
                for (int slot : selection.slots(h * g + j)) {
                    int b = slot / bt;
                    if (b < take.length) take[b] = true;
                }
            }
            for (int i = 0; i < take.length; i++) if (take[i]) out.add(t.block(i));
        }
        return out;
    }

    private void prefetch(int layer) {
        List<StoredBlock> copies = new ArrayList<>();
        for (Block b : lastRead.get(layer)) {
            StoredBlock c = b.stored();
            if (!b.resident() && c != null && b.refCount() > 0 && !(config.csd && "ssd".equals(c.tier()))) copies.add(c);
        }
        store.prefetch(copies);
    }

    private void promote(Block b) {
        MemorySegment seg;
        while (true) {
            try {
                seg = ctx.attach(b);
                break;
            } catch (KvBudgetExceededException full) {
                if (!demoteCold(b.bytes(), false)) throw full;
            }
        }
        fill(b, seg);
    }

    /** Copies the block's bytes up; a lost block goes back down so its zeroed memory is never read. */
    private void fill(Block b, MemorySegment seg) {
        try {
            store.readInto(b.stored(), seg);
        } catch (RuntimeException e) {
            ctx.detach(b, b.stored());
            throw e;
        }
    }

    @Override
    public void fetch(Block block) {
        promote(block);
        ctx.touch(block, clock);
    }

    @Override
    public boolean makeRoom(long bytes) {
        return demoteCold(bytes, false);
    }

    /**
     * Moves this sequence's least recently read resident blocks down until {@code bytes} were freed
     * (at least a few blocks at a time, so SSD writes batch). Pinned blocks (the current layer's),
     * shared blocks and, unless {@code tails}, blocks still being filled stay. False if nothing moved.
     */
    private boolean demoteCold(long bytes, boolean tails) {
        List<Block> candidates = new ArrayList<>();
        for (int l = 0; l < geometry.layers(); l++) {
            for (int h = 0; h < geometry.kvHeads(); h++) {
                BlockTable t = ctx.table(l, h);
                for (int i = 0; i < t.blockCount(); i++) {
                    Block b = t.block(i);
                    if (!b.resident() || b.refCount() > 1 || pinned.contains(b)) continue;
                    if (!tails && b.appendable() && b.used() < ctx.blockTokens()) continue;
                    candidates.add(b);
                }
            }
        }
        candidates.sort((a, c) -> Long.compare(a.lastUse(), c.lastUse()));
        long freed = 0;
        int moved = 0;
        for (Block b : candidates) {
            if (freed >= bytes && moved >= 4) break;
            if (!demote(b)) break;
            freed += b.bytes();
            moved++;
        }
        return moved > 0;
    }

    private boolean demote(Block b) {
        StoredBlock copy = b.stored();
        if (copy == null) {
            if (!store.canTake(b.bytes())) return false;
            copy = store.put(b.segment());
        }
        ctx.detach(b, copy);
        return true;
    }

    @Override
    public void afterStep(int tokens) {
        pinned.clear();
        if (config.resident <= 0) return;
        long held = 0;
        for (int l = 0; l < geometry.layers(); l++) {
            for (int h = 0; h < geometry.kvHeads(); h++) {
                BlockTable t = ctx.table(l, h);
                for (int i = 0; i < t.blockCount(); i++) if (t.block(i).resident()) held += t.block(i).bytes();
            }
        }
        if (held > config.resident) demoteCold(held - config.resident, false);
    }

    @Override
    public void swapOut() {
        pinned.clear();
        for (int l = 0; l < geometry.layers(); l++) {
            for (int h = 0; h < geometry.kvHeads(); h++) {
                BlockTable t = ctx.table(l, h);
                for (int i = 0; i < t.blockCount(); i++) {
                    Block b = t.block(i);
                    if (!b.resident() || b.refCount() > 1) continue;
                    if (!demote(b)) {
                        throw new KvBudgetExceededException(b.bytes(), 0, config.host + config.ssdBudget);
                    }
                }
            }
        }
        store.awaitWrites();
    }

    @Override
    public void swapIn() {
        List<Block> all = new ArrayList<>();
        List<StoredBlock> copies = new ArrayList<>();
        for (int l = 0; l < geometry.layers(); l++) {
            for (int h = 0; h < geometry.kvHeads(); h++) {
                BlockTable t = ctx.table(l, h);
                for (int i = 0; i < t.blockCount(); i++) {
                    Block b = t.block(i);
                    if (b.resident()) continue;
                    all.add(b);
                    copies.add(b.stored());
                }
            }
        }
        store.prefetch(copies);
        pinned.addAll(all);
        try {
            for (Block b : all) {
                fill(b, ctx.attach(b));
                ctx.touch(b, clock);
            }
        } finally {
            pinned.clear();
        }
    }

    @Override
    public AttentionOffload attentionOffload() {
        return config.csd ? store.csd() : null;
    }
}
