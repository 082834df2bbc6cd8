package dev.kvserve.kvcache;

import dev.kvserve.kvcache.evict.AttentionWeights;
import dev.kvserve.kvcache.evict.EvictionState;
import dev.kvserve.kvcache.evict.KeyWindow;
import dev.kvserve.kvcache.format.BlockCodec;
import dev.kvserve.kvcache.format.BlockContext;
import dev.kvserve.kvcache.format.FormatBinding;
import dev.kvserve.kvcache.format.FormatState;
import dev.kvserve.kvcache.format.KeyFrame;
import dev.kvserve.kvcache.format.SideMemory;
import dev.kvserve.kvcache.select.Selection;
import dev.kvserve.kvcache.select.SelectorState;
import dev.kvserve.kvcache.tier.AttentionOffload;
import dev.kvserve.kvcache.tier.StoredBlock;
import dev.kvserve.kvcache.tier.TierContext;
import dev.kvserve.kvcache.tier.TierState;
import java.util.function.Supplier;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.IdentityHashMap;
import java.util.Map;

/**
 * One sequence's paged cache: a {@link BlockTable} per layer and KV head, the per-sequence states of
 * its policy's parts, and the hook sequence the attention layer drives for each layer of a step:
 * {@link #append} → {@link #beforeAttention} → (attention reads the tables) → {@link #afterAttention};
 * then {@link #advance} once per step. Not thread-safe: one step of one sequence runs on one thread
 * at a time (different sequences may run concurrently; the pool is shared and synchronized).
 *
 * <p>If the pool runs out of budget in the middle of {@link #append} the sequence is left with a
 * partially stored step and must be closed (preempted).
 */
public final class PagedSequence implements SequenceKv {

    private final KvCacheManager manager;
    private final BlockPool pool;
    private final KvCachePolicy policy;
    private final FormatBinding binding;
    private final KvGeometry geometry;
    private final int blockTokens;
    private final BlockTable[][] tables;
    private final EvictionState eviction;
    private final SelectorState selector;
    private final TierState tier;
    private final FormatState formatState;
    private final Side side;
    private final Lanes evictionLanes;
    private final Lanes selectorLanes;
    private final BlockContext ctx;
    private final String tierName;
    private int length;
    private boolean promptDone;
    private boolean closed;

    PagedSequence(KvCacheManager manager, BlockPool pool, KvCachePolicy policy, FormatBinding binding) {
        this.manager = manager;
        this.pool = pool;
        this.policy = policy;
        this.binding = binding;
        this.geometry = binding.geometry();
        this.blockTokens = binding.blockTokens();
        this.evictionLanes = policy.eviction().map(e -> e.lanes()).orElse(Lanes.NONE);
        this.selectorLanes = policy.selector().map(s -> s.lanes()).orElse(Lanes.NONE);
        this.tables = new BlockTable[geometry.layers()][geometry.kvHeads()];
        for (BlockTable[] layer : tables) {
            for (int h = 0; h < layer.length; h++) {
                layer[h] = new BlockTable(blockTokens, evictionLanes.floats() + selectorLanes.floats(),
                        evictionLanes.ints() + selectorLanes.ints());
            }
        }
        this.side = new Side();
        this.eviction = policy.eviction().map(e -> e.open(geometry, blockTokens)).orElse(null);
        this.selector = policy.selector().map(s -> s.open(geometry, blockTokens)).orElse(null);
        this.tier = policy.tier().open(new Tiers());
        this.tierName = policy.tier().primaryTier();
        this.formatState = binding.openSequence(side);
        this.ctx = new BlockContext(geometry.headDim(), manager.rope());
    }

    /** Fork: shares every block of {@code src} (copy-on-write). */
    PagedSequence(PagedSequence src) {
        this.manager = src.manager;
        this.pool = src.pool;
        this.policy = src.policy;
        this.binding = src.binding;
        this.geometry = src.geometry;
        this.blockTokens = src.blockTokens;
        this.evictionLanes = src.evictionLanes;
        this.selectorLanes = src.selectorLanes;
        this.tables = new BlockTable[src.tables.length][];
        for (int l = 0; l < tables.length; l++) {
            tables[l] = new BlockTable[src.tables[l].length];
            for (int h = 0; h < tables[l].length; h++) {
                BlockTable t = new BlockTable(src.tables[l][h]);
                for (Block b : t.blocks) pool.retain(b);
                tables[l][h] = t;
            }
        }
        this.side = new Side();
        this.eviction = src.eviction == null ? null : src.eviction.fork();
        this.selector = src.selector == null ? null : src.selector.fork();
        this.tier = src.tier.fork(new Tiers());
        this.tierName = src.tierName;
        this.formatState = src.formatState.fork(side);
        this.ctx = new BlockContext(geometry.headDim(), manager.rope());
        this.length = src.length;
        this.promptDone = src.promptDone;
    }

    // ---------------------------------------------------------------- SequenceKv

    @Override
    public int length() {
        return length;
    }

    @Override
    public void advance(int tokens) {
        checkOpen();
        if (tokens < 0) throw new IllegalArgumentException("advance by " + tokens);
        length += tokens;
        tier.afterStep(tokens);
    }

    @Override
    public long bytesHeld() {
        if (closed) return 0;
        long b = side.bytes();
        for (BlockTable[] layer : tables) for (BlockTable t : layer) b += t.bytes();
        return b;
    }

    /** Bytes of blocks this sequence shares with at least one other sequence (included in bytesHeld). */
    public long bytesShared() {
        long b = 0;
        for (BlockTable[] layer : tables) for (BlockTable t : layer) for (Block block : t.blocks) if (block.refCount > 1) b += block.bytes;
        return b;
    }

    /** Live tokens summed over every layer and KV head. */
    public long liveTokens() {
        long n = 0;
        for (BlockTable[] layer : tables) for (BlockTable t : layer) n += t.live;
        return n;
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        for (BlockTable[] layer : tables) {
            for (BlockTable t : layer) {
                for (Block b : t.blocks) pool.release(b);
                t.blocks.clear();
                t.live = 0;
            }
        }
        tier.close();
        formatState.close();
        side.freeAll();
        manager.closed(this);
    }

    public boolean isClosed() {
        return closed;
    }

    // ---------------------------------------------------------------- what attention reads

    public KvCachePolicy policy() {
        return policy;
    }

    public KvGeometry geometry() {
        return geometry;
    }

    public int blockTokens() {
        return blockTokens;
    }

    public BlockTable table(int layer, int kvHead) {
        return tables[layer][kvHead];
    }

    public FormatState formatState() {
        return formatState;
    }

    /**
     * Preemption by swap: moves every block of this sequence to its policy's lower tiers (host RAM,
     * SSD) and returns their pool memory; {@link #swapIn} brings them back with identical bytes.
     *
     * @throws UnsupportedOperationException when the policy has no offload tier
     */
    public void swapOut() {
        checkOpen();
        tier.swapOut();
    }

    /** Makes every block resident again after {@link #swapOut}. */
    public void swapIn() {
        checkOpen();
        tier.swapIn();
    }

    /**
     * Moves at least {@code bytes} of this sequence's least recently read blocks out of the pool into
     * its policy's lower tiers (never tails still being filled or blocks shared with a fork), so that a
     * scheduler can promise the pool bytes to its next step. False when nothing could move (no offload
     * tier, or its lower tiers are full).
     */
    public boolean spill(long bytes) {
        checkOpen();
        return tier.makeRoom(bytes);
    }

    /** Bytes of this sequence's blocks held outside the pool (host RAM, SSD) and not resident. */
    public long bytesOffloaded() {
        long b = 0;
        for (BlockTable[] layer : tables) for (BlockTable t : layer) for (Block block : t.blocks) if (block.segment == null) b += block.bytes;
        return b;
    }

    /** Computes attention over non-resident blocks where they are stored, or null (see TierState). */
    public AttentionOffload attentionOffload() {
        return tier.attentionOffload();
    }

    /** StreamingLLM-style visibility, or null. */
    public KeyWindow keyWindow() {
        return eviction == null ? null : eviction.keyWindow();
    }

    /** True once a step completed the prompt (afterPrefill hooks ran). */
    public boolean promptDone() {
        return promptDone;
    }

    /** The layer as hooks see it, without lanes (for tests and tools). */
    public LayerKv layer(int layer) {
        return new View(layer, 0, 0, 0, 0);
    }

    // ---------------------------------------------------------------- hook sequence

    /**
     * Stores one layer's new keys and values ({@code rows.layer()}), runs the onAppend hooks, seals
     * blocks that left the format's recent window and compacts.
     */
    public void append(KvRows rows) {
        checkOpen();
        int layer = rows.layer();
        if (rows.kvHeads() != geometry.kvHeads() || rows.headDim() != geometry.headDim()) {
            throw new IllegalArgumentException("rows have " + rows.kvHeads() + "x" + rows.headDim() + " KV heads, cache "
                    + geometry.kvHeads() + "x" + geometry.headDim());
        }
        for (int h = 0; h < geometry.kvHeads(); h++) {
            BlockTable t = tables[layer][h];
            for (int r = 0; r < rows.rows(); r++) {
                int pos = rows.position(r);
                int last = t.blocks.size() - 1;
                Block tail = last < 0 ? null : t.blocks.get(last);
                if (tail == null || !tail.appendable || tail.used == blockTokens) {
                    tail = allocate(binding.appendCodec(layer, pos));
                    tail.appendable = true;
                    t.blocks.add(tail);
                    t.growLanes();
                } else {
                    tail = writable(t, last);
                }
                ctx.set(layer, h, tail.positions, formatState);
                tail.codec.write(tail.segment, tail.used, rows, r, h, ctx);
                t.clearLanes((t.blocks.size() - 1) * blockTokens + tail.used);
                tail.positions[tail.used++] = pos;
                tail.live++;
                t.live++;
            }
        }
        if (eviction != null) {
            eviction.onAppend(new View(layer, 0, 0, evictionLanes.floats(), evictionLanes.ints()), rows);
            compact(layer);
        }
        if (selector != null) {
            selector.onAppend(selectorView(layer), rows);
            compact(layer);
        }
        seal(layer, rows.position(rows.rows() - 1));
    }

    /**
     * Runs the pre-attention hooks for one layer: eviction (then compaction), the format state, the
     * selector and the tier. Returns the selection attention must use, or null for every token.
     */
    public Selection beforeAttention(int layer, QueryRows queries) {
        checkOpen();
        if (eviction != null) {
            eviction.beforeAttention(evictionView(layer), queries);
            compact(layer);
        }
        formatState.beforeAttention(layer, new View(layer, 0, 0, 0, 0));
        Selection selection = selector == null ? null : selector.select(selectorView(layer), queries);
        if (selection != null && selection.queryHeads() != geometry.heads()) {
            throw new IllegalStateException("selector returned " + selection.queryHeads() + " query heads, model has " + geometry.heads());
        }
        tier.beforeAttention(new View(layer, 0, 0, 0, 0), selection);
        return selection;
    }

    /** Lowest query position whose attention weights the eviction rule wants summed, or MAX_VALUE. */
    public int attentionWeightsFrom(int layer, int stepStart, int stepTokens, boolean endsPrompt) {
        return eviction == null ? Integer.MAX_VALUE : eviction.attentionWeightsFrom(layer, stepStart, stepTokens, endsPrompt);
    }

    /** Post-attention hooks of one layer; {@code endsPrompt} also runs the afterPrefill hooks. */
    public void afterAttention(int layer, QueryRows queries, AttentionWeights weights, boolean endsPrompt) {
        checkOpen();
        if (eviction != null) {
            eviction.afterAttention(evictionView(layer), queries, weights);
            compact(layer);
        }
        if (endsPrompt) {
            if (eviction != null) {
                eviction.afterPrefill(evictionView(layer));
                compact(layer);
            }
            if (selector != null) {
                selector.afterPrefill(selectorView(layer));
                compact(layer);
            }
            if (layer == geometry.layers() - 1) promptDone = true;
        }
    }

    /**
     * Runs the afterPrefill hooks of {@code layer} for a prompt whose last step was not marked (see
     * {@code StepBatch.Entry.endsPrompt}); the prompt counts as done after the last layer.
     */
    public void finishPrompt(int layer) {
        checkOpen();
        if (promptDone) return;
        if (eviction != null) {
            eviction.afterPrefill(evictionView(layer));
            compact(layer);
        }
        if (selector != null) {
            selector.afterPrefill(selectorView(layer));
            compact(layer);
        }
        if (layer == geometry.layers() - 1) promptDone = true;
    }

    private View evictionView(int layer) {
        return new View(layer, 0, 0, evictionLanes.floats(), evictionLanes.ints());
    }

    private View selectorView(int layer) {
        return new View(layer, evictionLanes.floats(), evictionLanes.ints(), selectorLanes.floats(), selectorLanes.ints());
    }

    // ---------------------------------------------------------------- block maintenance

    /** A new block from the pool; when the pool is full the tier moves cold blocks down first. */
    private Block allocate(BlockCodec codec) {
        while (true) {
            try {
                return pool.allocate(codec, tierName);
            } catch (KvBudgetExceededException full) {
                if (!tier.makeRoom(codec.blockBytes())) throw full;
            }
        }
    }

    /** Brings an offloaded block back into the pool before anything reads or writes its bytes. */
    private void ensureResident(Block b) {
        if (b.segment == null) tier.fetch(b);
    }

    /** The block at {@code i}, resident, copied first if another sequence shares it; its lower-tier copy is now stale. */
    private Block writable(BlockTable t, int i) {
        Block b = t.blocks.get(i);
        ensureResident(b);
        if (b.refCount == 1) {
            if (b.stored != null) {
                b.stored.free();
                b.stored = null;
            }
            return b;
        }
        Block copy = allocate(b.codec);
        MemorySegment.copy(b.segment, 0, copy.segment, 0, b.bytes);
        System.arraycopy(b.positions, 0, copy.positions, 0, blockTokens);
        copy.used = b.used;
        copy.live = b.live;
        copy.appendable = b.appendable;
        t.blocks.set(i, copy);
        pool.release(b);
        return copy;
    }

    /** Re-encodes full blocks older than the format's recent window into its sealed codec. */
    private void seal(int layer, int newestPosition) {
        int recent = binding.recentTokens();
        if (recent == Integer.MAX_VALUE) return;
        int d = geometry.headDim();
        for (int h = 0; h < geometry.kvHeads(); h++) {
            BlockTable t = tables[layer][h];
            for (int i = 0; i < t.blocks.size(); i++) {
                Block b = t.blocks.get(i);
                if (!b.appendable || b.used != blockTokens || b.maxPosition() > newestPosition - recent) continue;
                BlockCodec target = binding.sealedCodec(layer, b.codec);
                ensureResident(b);
                if (target == b.codec) {
                    b.appendable = false;
                    continue;
                }
                float[] keys = new float[blockTokens * d];
                float[] values = new float[blockTokens * d];
                ctx.set(layer, h, b.positions, formatState);
                for (int s = 0; s < blockTokens; s++) {
                    if (b.positions[s] < 0) continue;
                    b.codec.decodeKey(b.segment, s, keys, s * d, ctx);
                    b.codec.decodeValue(b.segment, s, values, s * d, ctx);
                    if (b.codec.keyFrame() != target.keyFrame()) convertFrame(keys, s * d, b.positions[s], target.keyFrame());
                }
                Block sealed = allocate(target);
                System.arraycopy(b.positions, 0, sealed.positions, 0, blockTokens);
                sealed.used = b.used;
                sealed.live = b.live;
                sealed.appendable = false;
                ctx.set(layer, h, sealed.positions, formatState);
                target.encodeBlock(sealed.segment, keys, values, blockTokens, ctx);
                t.blocks.set(i, sealed);
                pool.release(b);
            }
        }
    }

    private void convertFrame(float[] key, int off, int position, KeyFrame to) {
        manager.rope().rotate(key, off, to == KeyFrame.POST_ROPE ? position : -position);
    }

    /**
     * Frees blocks whose slots all died, then moves the last live slots into holes of blocks with the
     * same per-token codec, and trims dead slots at the end so the next append reuses them.
     */
    private void compact(int layer) {
        for (int h = 0; h < geometry.kvHeads(); h++) {
            BlockTable t = tables[layer][h];
            if (t.live == t.slots()) continue;
            dropDeadBlocks(t);
            fillHoles(t);
            dropDeadBlocks(t);
            trimTail(t);
        }
    }

    private void dropDeadBlocks(BlockTable t) {
        for (int i = t.blocks.size() - 1; i >= 0; i--) {
            if (t.blocks.get(i).live == 0) pool.release(t.removeBlock(i));
        }
    }

    private void fillHoles(BlockTable t) {
        int j = t.slots() - 1;
        for (int hole = 0; hole < j; hole++) {
            Block hb = t.blocks.get(hole / blockTokens);
            if (hb.positions[hole % blockTokens] >= 0 || !hb.codec.perToken()) continue;
            while (j > hole && t.position(j) < 0) j--;
            if (j <= hole) break;
            Block sb = t.blocks.get(j / blockTokens);
            if (sb.codec != hb.codec) continue;
            Block dst = writable(t, hole / blockTokens);
            Block src = writable(t, j / blockTokens);
            int hs = hole % blockTokens, js = j % blockTokens;
            src.codec.copySlot(src.segment, js, dst.segment, hs);
            dst.positions[hs] = src.positions[js];
            src.positions[js] = -1;
            dst.live++;
            src.live--;
            t.moveLanes(j, hole);
            j--;
        }
    }

    private void trimTail(BlockTable t) {
        while (!t.blocks.isEmpty()) {
            int last = t.blocks.size() - 1;
            Block b = t.blocks.get(last);
            if (b.live == 0) {
                pool.release(t.removeBlock(last));
                continue;
            }
            if (b.positions[b.used - 1] >= 0 || !b.appendable) return;
            b = writable(t, last);
            while (b.used > 0 && b.positions[b.used - 1] < 0) b.used--;
            return;
        }
    }

    /** Marks every slot at position >= tokens dead and compacts (prefix forks). */
    void truncate(int tokens) {
        for (int l = 0; l < tables.length; l++) {
            for (BlockTable t : tables[l]) {
                for (int i = 0; i < t.blocks.size(); i++) {
                    Block b = t.blocks.get(i);
                    boolean any = false;
                    for (int s = 0; s < b.used; s++) any |= b.positions[s] >= tokens;
                    if (!any) continue;
                    b = writable(t, i);
                    for (int s = 0; s < b.used; s++) {
                        if (b.positions[s] >= tokens) {
                            b.positions[s] = -1;
                            b.live--;
                            t.live--;
                        }
                    }
                }
            }
            compact(l);
        }
        length = Math.min(length, tokens);
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("sequence is closed");
    }

    // ---------------------------------------------------------------- hook view

    private final class View implements LayerKv {
        private final int layer;
        private final int floatBase;
        private final int intBase;
        private final int floatCount;
        private final int intCount;

        View(int layer, int floatBase, int intBase, int floatCount, int intCount) {
            this.layer = layer;
            this.floatBase = floatBase;
            this.intBase = intBase;
            this.floatCount = floatCount;
            this.intCount = intCount;
        }

        @Override
        public int layer() {
            return layer;
        }

        @Override
        public KvGeometry geometry() {
            return geometry;
        }

        @Override
        public int blockTokens() {
            return blockTokens;
        }

        @Override
        public int slots(int kvHead) {
            return tables[layer][kvHead].slots();
        }

        @Override
        public int liveTokens(int kvHead) {
            return tables[layer][kvHead].live;
        }

        @Override
        public boolean isLive(int kvHead, int slot) {
            return position(kvHead, slot) >= 0;
        }

        @Override
        public int position(int kvHead, int slot) {
            BlockTable t = tables[layer][kvHead];
            checkSlot(t, slot);
            return t.position(slot);
        }

        private void checkSlot(BlockTable t, int slot) {
            if (slot < 0 || slot >= t.slots()) throw new IndexOutOfBoundsException("slot " + slot + " of " + t.slots());
        }

        private Block liveBlock(BlockTable t, int slot) {
            checkSlot(t, slot);
            Block b = t.blocks.get(slot / blockTokens);
            if (b.positions[slot % blockTokens] < 0) throw new IllegalArgumentException("slot " + slot + " is dead");
            ensureResident(b);
            return b;
        }

        @Override
        public void readKey(int kvHead, int slot, float[] dst, int off) {
            Block b = liveBlock(tables[layer][kvHead], slot);
            int s = slot % blockTokens;
            ctx.set(layer, kvHead, b.positions, formatState);
            b.codec.decodeKey(b.segment, s, dst, off, ctx);
            if (b.codec.keyFrame() == KeyFrame.PRE_ROPE) manager.rope().rotate(dst, off, b.positions[s]);
        }

        @Override
        public void readKeyPreRope(int kvHead, int slot, float[] dst, int off) {
            Block b = liveBlock(tables[layer][kvHead], slot);
            int s = slot % blockTokens;
            ctx.set(layer, kvHead, b.positions, formatState);
            b.codec.decodeKey(b.segment, s, dst, off, ctx);
            if (b.codec.keyFrame() == KeyFrame.POST_ROPE) manager.rope().rotate(dst, off, -b.positions[s]);
        }

        @Override
        public void readValue(int kvHead, int slot, float[] dst, int off) {
            Block b = liveBlock(tables[layer][kvHead], slot);
            ctx.set(layer, kvHead, b.positions, formatState);
            b.codec.decodeValue(b.segment, slot % blockTokens, dst, off, ctx);
        }

        @Override
        public void evict(int kvHead, int slot) {
            BlockTable t = tables[layer][kvHead];
            liveBlock(t, slot);
            Block b = writable(t, slot / blockTokens);
            b.positions[slot % blockTokens] = -1;
            b.live--;
            t.live--;
        }

        @Override
        public void rewrite(int kvHead, int slot, float[] key, int keyOff, float[] value, int valueOff) {
            BlockTable t = tables[layer][kvHead];
            liveBlock(t, slot);
            Block b = writable(t, slot / blockTokens);
            int s = slot % blockTokens;
            int pos = b.positions[s];
            int d = geometry.headDim();
            ctx.set(layer, kvHead, b.positions, formatState);
            if (b.codec.perToken()) {
                int kvDim = geometry.kvDim();
                float[] pre = new float[kvDim], post = new float[kvDim], v = new float[kvDim];
                System.arraycopy(key, keyOff, post, kvHead * d, d);
                System.arraycopy(key, keyOff, pre, kvHead * d, d);
                manager.rope().rotate(pre, kvHead * d, -pos);
                System.arraycopy(value, valueOff, v, kvHead * d, d);
                KvRows row = new KvRows(layer, 1, pos, geometry.kvHeads(), d, pre, post, v);
                b.codec.write(b.segment, s, row, 0, kvHead, ctx);
                return;
            }
            float[] keys = new float[blockTokens * d];
            float[] values = new float[blockTokens * d];
            for (int i = 0; i < blockTokens; i++) {
                if (b.positions[i] < 0) continue;
                if (i == s) {
                    System.arraycopy(key, keyOff, keys, i * d, d);
                    if (b.codec.keyFrame() == KeyFrame.PRE_ROPE) manager.rope().rotate(keys, i * d, -pos);
                    System.arraycopy(value, valueOff, values, i * d, d);
                } else {
                    b.codec.decodeKey(b.segment, i, keys, i * d, ctx);
                    b.codec.decodeValue(b.segment, i, values, i * d, ctx);
                }
            }
            b.codec.encodeBlock(b.segment, keys, values, blockTokens, ctx);
        }

        private int lane(int lane, int count) {
            if (lane < 0 || lane >= count) throw new IndexOutOfBoundsException("lane " + lane + " of " + count);
            return lane;
        }

        @Override
        public float slotFloat(int kvHead, int slot, int lane) {
            BlockTable t = tables[layer][kvHead];
            checkSlot(t, slot);
            return t.floats[slot * t.floatLanes + floatBase + lane(lane, floatCount)];
        }

        @Override
        public void setSlotFloat(int kvHead, int slot, int lane, float value) {
            BlockTable t = tables[layer][kvHead];
            checkSlot(t, slot);
            t.floats[slot * t.floatLanes + floatBase + lane(lane, floatCount)] = value;
        }

        @Override
        public int slotInt(int kvHead, int slot, int lane) {
            BlockTable t = tables[layer][kvHead];
            checkSlot(t, slot);
            return t.ints[slot * t.intLanes + intBase + lane(lane, intCount)];
        }

        @Override
        public void setSlotInt(int kvHead, int slot, int lane, int value) {
            BlockTable t = tables[layer][kvHead];
            checkSlot(t, slot);
            t.ints[slot * t.intLanes + intBase + lane(lane, intCount)] = value;
        }
    }

    // ---------------------------------------------------------------- tier context

    private final class Tiers implements TierContext {
        @Override
        public KvGeometry geometry() {
            return geometry;
        }

        @Override
        public int blockTokens() {
            return blockTokens;
        }

        @Override
        public BlockTable table(int layer, int kvHead) {
            return tables[layer][kvHead];
        }

        @Override
        public void detach(Block block, StoredBlock copy) {
            if (copy == null || copy.bytes() != block.bytes) throw new IllegalArgumentException("copy does not match the block");
            if (block.stored != null && block.stored != copy) block.stored.free();
            block.stored = copy;
            pool.detach(block);
        }

        @Override
        public void keepCopy(Block block, StoredBlock copy) {
            if (block.stored != null && block.stored != copy) block.stored.free();
            block.stored = copy;
        }

        @Override
        public MemorySegment attach(Block block) {
            if (block.stored == null) throw new IllegalStateException("non-resident block without a lower-tier copy");
            pool.attach(block);
            return block.segment;
        }

        @Override
        public void touch(Block block, long clock) {
            block.lastUse = clock;
        }

        @Override
        public long poolBytesFree() {
            return pool.budget() - pool.bytesUsed();
        }

        @Override
        public <T extends AutoCloseable> T shared(String key, Supplier<T> create) {
            return manager.tierResource(key, create);
        }
    }

    // ---------------------------------------------------------------- side memory

    private final class Side implements SideMemory {
        private final Map<MemorySegment, Arena> arenas = new IdentityHashMap<>();
        private long bytes;

        @Override
        public MemorySegment allocate(long n) {
            if (n <= 0) throw new IllegalArgumentException("side allocation of " + n + " bytes");
            Arena arena = pool.allocateSide(n);
            MemorySegment seg = arena.allocate(n, 16);
            arenas.put(seg, arena);
            bytes += n;
            return seg;
        }

        @Override
        public void free(MemorySegment segment) {
            Arena arena = arenas.remove(segment);
            if (arena == null) throw new IllegalArgumentException("segment was not allocated here or already freed");
            bytes -= segment.byteSize();
            pool.freeSide(segment.byteSize(), arena);
        }

        @Override
        public long bytes() {
            return bytes;
        }

        void freeAll() {
            for (Map.Entry<MemorySegment, Arena> e : arenas.entrySet()) pool.freeSide(e.getKey().byteSize(), e.getValue());
            arenas.clear();
            bytes = 0;
        }
    }
}
