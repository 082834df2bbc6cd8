package dev.kvserve.attention;

import dev.kvserve.kernels.kv.KvKernels;
import dev.kvserve.kvcache.Block;
import dev.kvserve.kvcache.BlockTable;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.kvcache.QueryRows;
import dev.kvserve.kvcache.RopeTable;
import dev.kvserve.kvcache.SequenceKv;
import dev.kvserve.kvcache.evict.AttentionWeights;
import dev.kvserve.kvcache.evict.KeyWindow;
import dev.kvserve.kvcache.format.BlockCodec;
import dev.kvserve.kvcache.format.BlockContext;
import dev.kvserve.kvcache.select.Selection;
import dev.kvserve.kvcache.tier.AttentionOffload;
import dev.kvserve.kvcache.tier.PartialAttention;
import java.util.concurrent.CompletableFuture;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.Future;

/**
 * Attention over the paged, compressed KV cache on the CPU. For each sequence of a step it stores
 * the new keys (rotating them when the format stores post-RoPE keys) and values through the
 * sequence's policy, runs the policy's hooks, and computes causal grouped-query attention of the
 * step's queries over every visible cached token, block by block, with a running maximum and sum
 * (flash-style online softmax). Blocks are read through their codec ({@link BlockCodec#keyScores},
 * {@link BlockCodec#addValues}); nothing is dequantised beyond one slot at a time. A
 * {@link Selection} restricts a step to chosen slots, read in place.
 *
 * <p>Work is split into tasks of (sequence, KV head, tile of query rows): the {@code groupSize}
 * query heads sharing a KV head and up to {@link #ROW_TILE} rows read each block once. Buffers are
 * host memory (the CPU backend's segments), F32, native byte order.
 *
 * <p>A {@code RuntimeException} from one sequence's work (storing, its policy's hooks, its attention
 * tasks) is that sequence's fault: see {@link StepBatch#isolating}.
 */
public final class PagedAttention implements KvAttention, AutoCloseable {

    /** Query rows that share one pass over the blocks in prefill. */
    public static final int ROW_TILE = 16;

    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private final KvGeometry geometry;
    private final RopeTable rope;
    private final ForkJoinPool workers;
    private final boolean ownWorkers;

    /** Uses {@code threads} worker threads (1 = run on the caller's thread). */
    public PagedAttention(KvGeometry geometry, RopeTable rope, int threads) {
        if (threads < 1) throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        this.geometry = geometry;
        this.rope = rope;
        this.workers = threads == 1 ? null : new ForkJoinPool(threads);
        this.ownWorkers = true;
    }

    /** One thread per available processor. */
    public PagedAttention(KvGeometry geometry, RopeTable rope) {
        this(geometry, rope, Runtime.getRuntime().availableProcessors());
    }

    @Override
    public void attend(int layer, StepBatch batch, MemorySegment q, MemorySegment k, MemorySegment v, MemorySegment out) {
        if (layer < 0 || layer >= geometry.layers()) {
            throw new IllegalArgumentException("layer " + layer + " outside [0, " + geometry.layers() + ")");
        }
        int heads = geometry.heads(), d = geometry.headDim(), kvDim = geometry.kvDim();
        int rows = 0;
        for (StepBatch.Entry e : batch.entries()) rows = Math.max(rows, e.firstRow() + e.tokens());
        checkSize("q", q, (long) rows * heads * d);
        checkSize("out", out, (long) rows * heads * d);
        checkSize("k", k, (long) rows * kvDim);
        checkSize("v", v, (long) rows * kvDim);

        int n = batch.size();
        Step[] steps = new Step[n];
        // inputs are read and outputs written on the caller's thread: the buffers may be confined to it
        for (int i = 0; i < n; i++) {
            if (!batch.failed(i)) steps[i] = new Step(layer, batch.get(i), sequence(batch.get(i).cache()), q, k, v);
        }
        // 1. store + pre-attention hooks, per sequence
        run(n, i -> {
            if (steps[i] != null) steps[i].guarded(steps[i]::prepare);
        });
        collectFaults(batch, steps);
        // 2. attention tasks: (sequence, kv head, row tile)
        List<Callable<Void>> tasks = new ArrayList<>();
        for (Step s : steps) {
            if (s == null) continue;
            for (int h = 0; h < geometry.kvHeads(); h++) {
                for (int r = 0; r < s.entry.tokens(); r += ROW_TILE) {
                    int kvHead = h, r0 = r, r1 = Math.min(s.entry.tokens(), r + ROW_TILE);
                    tasks.add(() -> {
                        s.guarded(() -> s.attendTile(kvHead, r0, r1));
                        return null;
                    });
                }
            }
        }
        invoke(tasks);
        collectFaults(batch, steps);
        // 3. post-attention hooks, then outputs: a failed sequence's rows are zeros, which the
        // row-independent rest of the decoder carries without touching anyone else's rows
        run(n, i -> {
            if (steps[i] != null) steps[i].guarded(steps[i]::finish);
        });
        collectFaults(batch, steps);
        for (int i = 0; i < n; i++) {
            StepBatch.Entry e = batch.get(i);
            long offset = (long) e.firstRow() * heads * d * 4;
            if (steps[i] != null) {
                MemorySegment.copy(steps[i].result, 0, out, F32, offset, steps[i].result.length);
            } else {
                out.asSlice(offset, (long) e.tokens() * heads * d * 4).fill((byte) 0);
            }
        }
    }

    /** Moves the faults of this phase into the batch (which throws the first one unless it isolates). */
    private static void collectFaults(StepBatch batch, Step[] steps) {
        for (int i = 0; i < steps.length; i++) {
            if (steps[i] == null || steps[i].fault == null) continue;
            batch.fail(i, steps[i].fault);
            steps[i] = null;
        }
    }

    private static void checkSize(String name, MemorySegment seg, long floats) {
        if (seg.byteSize() < floats * 4) {
            throw new IllegalArgumentException(name + " buffer holds " + seg.byteSize() + " bytes, step needs " + floats * 4);
        }
    }

    private PagedSequence sequence(SequenceKv cache) {
        if (!(cache instanceof PagedSequence p)) {
            throw new IllegalArgumentException("PagedAttention needs sequences opened by a KvCacheManager, got "
                    + cache.getClass().getName());
        }
        KvGeometry g = p.geometry();
        // not equals(): RopeConfig holds an array, so equal geometries built twice differ as records
        if (g.layers() != geometry.layers() || g.heads() != geometry.heads() || g.kvHeads() != geometry.kvHeads()
                || g.headDim() != geometry.headDim()) {
            throw new IllegalArgumentException("sequence belongs to a cache of another geometry: " + g + " vs " + geometry);
        }
        return p;
    }

    private interface IntTask {
        void run(int i);
    }

    private void run(int n, IntTask task) {
        if (workers == null || n == 1) {
            for (int i = 0; i < n; i++) task.run(i);
            return;
        }
        List<Callable<Void>> tasks = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            int idx = i;
            tasks.add(() -> {
                task.run(idx);
                return null;
            });
        }
        invoke(tasks);
    }

    private void invoke(List<Callable<Void>> tasks) {
        if (workers == null || tasks.size() == 1) {
            try {
                for (Callable<Void> t : tasks) t.call();
            } catch (RuntimeException e) {
                throw e;
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
            return;
        }
        try {
            List<Future<Void>> futures = workers.invokeAll(tasks);
            for (Future<Void> f : futures) {
                try {
                    f.get();
                } catch (ExecutionException e) {
                    Throwable cause = e.getCause();
                    // the pool may report a copy made on this thread, caused by the task's own exception
                    if (cause.getCause() != null && cause.getCause().getClass() == cause.getClass()) cause = cause.getCause();
                    if (cause instanceof RuntimeException re) throw re;
                    if (cause instanceof Error err) throw err;
                    throw new IllegalStateException(cause);
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted during attention", e);
        }
    }

    /** One sequence's part of a step for one layer. */
    private final class Step {
        final int layer;
        final StepBatch.Entry entry;
        final PagedSequence seq;
        QueryRows queries;
        Selection selection;
        AttentionOffload offload;
        KeyWindow window;
        int weightsFrom;
        boolean endsPrompt;
        float[] result;
        float[][] weightSums;
        /**
         * Per KV head and row tile, when the step has several tiles: the tiles of one KV head run in
         * parallel, so each adds its rows' attention weights into its own array and {@link #finish}
         * adds the tiles into {@link #weightSums} in order (same sums whatever thread ran which tile).
         */
        float[][][] tileSums;

        final float[] qa;
        final float[] pre;
        final float[] vals;
        /** The first exception of this sequence's work in this layer; its remaining work is skipped. */
        volatile RuntimeException fault;

        /** Runs a piece of this sequence's work; an exception fails this sequence, not the others of the step. */
        void guarded(Runnable work) {
            if (fault != null) return;
            try {
                work.run();
            } catch (RuntimeException e) {
                synchronized (this) {
                    if (fault == null) fault = e;
                }
            }
        }

        Step(int layer, StepBatch.Entry entry, PagedSequence seq, MemorySegment q, MemorySegment k, MemorySegment v) {
            this.layer = layer;
            this.entry = entry;
            this.seq = seq;
            int n = entry.tokens(), start = entry.startPos();
            if (start != seq.length()) {
                throw new IllegalArgumentException("step starts at position " + start + " but the sequence holds " + seq.length() + " tokens");
            }
            int heads = geometry.heads(), d = geometry.headDim(), kvDim = geometry.kvDim();
            qa = new float[n * heads * d];
            MemorySegment.copy(q, F32, (long) entry.firstRow() * heads * d * 4, qa, 0, qa.length);
            pre = new float[n * kvDim];
            vals = new float[n * kvDim];
            MemorySegment.copy(k, F32, (long) entry.firstRow() * kvDim * 4, pre, 0, pre.length);
            MemorySegment.copy(v, F32, (long) entry.firstRow() * kvDim * 4, vals, 0, vals.length);
        }

        void prepare() {
            int n = entry.tokens(), start = entry.startPos();
            int heads = geometry.heads(), d = geometry.headDim();
            float[] post = pre.clone();
            for (int r = 0; r < n; r++) {
                for (int h = 0; h < geometry.kvHeads(); h++) rope.rotate(post, (r * geometry.kvHeads() + h) * d, start + r);
            }
            // prompts not marked as ending: the first single-token step after them ends them
            if (!entry.endsPrompt() && !seq.promptDone() && n == 1 && start > 0) seq.finishPrompt(layer);
            endsPrompt = entry.endsPrompt() && !seq.promptDone();
            seq.append(new KvRows(layer, n, start, geometry.kvHeads(), d, pre, post, vals));
            queries = new QueryRows(qa, n, start, heads, d);
            selection = seq.beforeAttention(layer, queries);
            window = seq.keyWindow();
            offload = seq.attentionOffload();
            weightsFrom = seq.attentionWeightsFrom(layer, start, n, endsPrompt);
            result = new float[n * heads * d];
            if (weightsFrom <= start + n - 1) {
                weightSums = new float[geometry.kvHeads()][];
                for (int h = 0; h < geometry.kvHeads(); h++) {
                    weightSums[h] = new float[geometry.groupSize() * seq.table(layer, h).slots()];
                }
                if (n > ROW_TILE) {
                    tileSums = new float[geometry.kvHeads()][(n + ROW_TILE - 1) / ROW_TILE][];
                    for (int h = 0; h < tileSums.length; h++) {
                        for (int t = 0; t < tileSums[h].length; t++) tileSums[h][t] = new float[weightSums[h].length];
                    }
                }
            }
        }

        void attendTile(int kvHead, int r0, int r1) {
            int g = geometry.groupSize();
            if (selection == null || selection.shared(kvHead * g, g)) {
                attendGroup(kvHead, 0, g, r0, r1, selection == null ? null : selection.slots(kvHead * g));
            } else {
                for (int j = 0; j < g; j++) attendGroup(kvHead, j, 1, r0, r1, selection.slots(kvHead * g + j));
            }
        }

        /** Query heads kvHead*G+g0 .. +gn-1, rows r0..r1-1, over {@code slots} (null = all). */
        void attendGroup(int kvHead, int g0, int gn, int r0, int r1, int[] slots) {
            int d = geometry.headDim(), heads = geometry.heads(), g = geometry.groupSize();
            int nr = r1 - r0, nq = nr * gn;
            int start = entry.startPos();
            float scale = (float) (1.0 / Math.sqrt(d));
            float[] qa = queries.q();
            float[] qb = new float[nq * d];
            int[] qpos = new int[nq];
            for (int r = 0; r < nr; r++) {
                for (int j = 0; j < gn; j++) {
                    int i = r * gn + j;
                    System.arraycopy(qa, queries.offset(r0 + r, kvHead * g + g0 + j), qb, i * d, d);
                    KvKernels.scale(qb, i * d, d, scale);
                    qpos[i] = start + r0 + r;
                }
            }
            // StreamingLLM: sink keys are seen at cache positions, i.e. by a query rotated back
            float[] qSink = null;
            if (window != null && window.sinkShift(start + r1 - 1) > 0) {
                qSink = qb.clone();
                for (int i = 0; i < nq; i++) rope.rotate(qSink, i * d, -window.sinkShift(qpos[i]));
            }
            BlockTable table = seq.table(layer, kvHead);
            int bt = table.blockTokens();
            // blocks held by a computational-storage tier: their partial attention runs there, overlapped with ours
            CompletableFuture<PartialAttention> remote = offloadedPartial(kvHead, table, slots, qb, qpos, nq);
            float[] m = new float[nq];
            float[] l = new float[nq];
            float[] acc = new float[nq * d];
            java.util.Arrays.fill(m, Float.NEGATIVE_INFINITY);
            float[] scores = new float[nq * bt];
            float[] sinkScores = qSink == null ? null : new float[nq * bt];
            boolean[] chosen = slots == null ? null : new boolean[bt];
            BlockContext ctx = new BlockContext(d, rope);
            int cursor = 0;
            for (int b = 0; b < table.blockCount(); b++) {
                Block block = table.block(b);
                int from = 0, to = block.used();
                if (slots != null) {
                    // the selected slots of this block, as a range plus a mask
                    while (cursor < slots.length && slots[cursor] < b * bt) cursor++;
                    int c0 = cursor;
                    while (cursor < slots.length && slots[cursor] < (b + 1) * bt) cursor++;
                    if (c0 == cursor) continue;
                    java.util.Arrays.fill(chosen, false);
                    for (int c = c0; c < cursor; c++) chosen[slots[c] - b * bt] = true;
                    from = slots[c0] - b * bt;
                    to = Math.min(to, slots[cursor - 1] - b * bt + 1);
                    if (from >= to) continue;
                }
                if (!block.resident()) continue;
                int n = to - from;
                if (!scoreBlock(block, from, to, qb, qSink, nq, qpos, scores, sinkScores, chosen, ctx, kvHead)) continue;
                for (int i = 0; i < nq; i++) {
                    int o = i * n;
                    float mNew = KvKernels.max(scores, o, n, m[i]);
                    if (mNew == Float.NEGATIVE_INFINITY) {
                        java.util.Arrays.fill(scores, o, o + n, 0f);
                        continue;
                    }
                    float sum = KvKernels.expShift(scores, o, n, mNew);
                    if (m[i] != mNew) {
                        float corr = m[i] == Float.NEGATIVE_INFINITY ? 0f : (float) Math.exp(m[i] - mNew);
                        l[i] *= corr;
                        KvKernels.scale(acc, i * d, d, corr);
                        m[i] = mNew;
                    }
                    l[i] += sum;
                }
                block.codec().addValues(block.segment(), from, to, scores, n, nq, acc, 0, d, ctx);
            }
            if (remote != null) PartialAttention.mergeInto(m, l, acc, join(remote), d);
            for (int i = 0; i < nq; i++) {
                int r = i / gn, j = i % gn;
                int dst = ((r0 + r) * heads + kvHead * g + g0 + j) * d;
                float inv = l[i] > 0f ? 1f / l[i] : 0f;
                for (int c = 0; c < d; c++) result[dst + c] = acc[i * d + c] * inv;
            }
            if (weightSums != null) {
                float[] sums = tileSums == null ? weightSums[kvHead] : tileSums[kvHead][r0 / ROW_TILE];
                sumWeights(kvHead, sums, g0, gn, table, slots, qb, qSink, nq, qpos, m, l, ctx);
            }
        }

        /** Starts partial attention over the selected non-resident blocks on the tier's device, or null if there are none. */
        CompletableFuture<PartialAttention> offloadedPartial(int kvHead, BlockTable table, int[] slots, float[] qb, int[] qpos, int nq) {
            int bt = table.blockTokens();
            List<AttentionOffload.BlockRef> refs = null;
            int cursor = 0;
            for (int b = 0; b < table.blockCount(); b++) {
                Block block = table.block(b);
                boolean[] mask = null;
                if (slots != null) {
                    while (cursor < slots.length && slots[cursor] < b * bt) cursor++;
                    int c0 = cursor;
                    while (cursor < slots.length && slots[cursor] < (b + 1) * bt) cursor++;
                    if (c0 == cursor) continue;
                    mask = new boolean[bt];
                    for (int c = c0; c < cursor; c++) mask[slots[c] - b * bt] = true;
                }
                if (block.resident()) continue;
                if (offload == null) throw new IllegalStateException("attention reached a block that is not resident and the tier cannot attend over it");
                if (window != null || weightSums != null) {
                    throw new UnsupportedOperationException("computational-storage attention does not combine with key windows or attention-weight eviction");
                }
                if (refs == null) refs = new ArrayList<>();
                refs.add(new AttentionOffload.BlockRef(block.stored(), block.codec(), block.positions().clone(), mask));
            }
            if (refs == null) return null;
            return offload.attend(new AttentionOffload.Request(layer, kvHead, geometry.headDim(), qb.clone(), qpos.clone(),
                    seq.formatState(), rope, refs));
        }

        private PartialAttention join(CompletableFuture<PartialAttention> f) {
            try {
                return f.get();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted waiting for offloaded attention", e);
            } catch (ExecutionException e) {
                if (e.getCause() instanceof RuntimeException re) throw re;
                throw new IllegalStateException(e.getCause());
            }
        }

        /**
         * scores[i*n + s-from] for the block's slots in [from, to): masked (dead, not chosen, in the
         * future, outside the key window) → -inf. Returns false when every score is masked.
         */
        boolean scoreBlock(Block block, int from, int to, float[] qb, float[] qSink, int nq, int[] qpos,
                           float[] scores, float[] sinkScores, boolean[] chosen, BlockContext ctx, int kvHead) {
            int n = to - from;
            int d = geometry.headDim();
            int[] pos = block.positions();
            ctx.set(layer, kvHead, pos, seq.formatState());
            BlockCodec codec = block.codec();
            codec.keyScores(block.segment(), from, to, qb, 0, d, nq, scores, n, ctx);
            boolean hasSink = false;
            if (qSink != null) {
                for (int s = from; s < to && !hasSink; s++) hasSink = pos[s] >= 0 && pos[s] < window.sinks();
                if (hasSink) codec.keyScores(block.segment(), from, to, qSink, 0, d, nq, sinkScores, n, ctx);
            }
            boolean any = false;
            for (int s = from; s < to; s++) {
                int p = pos[s];
                boolean slotOk = p >= 0 && (chosen == null || chosen[s]);
                for (int i = 0; i < nq; i++) {
                    int at = i * n + s - from;
                    boolean visible = slotOk && p <= qpos[i] && (window == null || window.visible(qpos[i], p));
                    if (!visible) {
                        scores[at] = Float.NEGATIVE_INFINITY;
                    } else {
                        if (hasSink && p < window.sinks()) scores[at] = sinkScores[at];
                        any = true;
                    }
                }
            }
            return any;
        }

        /** Second pass: Σ over requested queries of softmax probabilities per slot, added into {@code sums}. */
        void sumWeights(int kvHead, float[] sums, int g0, int gn, BlockTable table, int[] slots, float[] qb, float[] qSink,
                        int nq, int[] qpos, float[] m, float[] l, BlockContext ctx) {
            int bt = table.blockTokens();
            int total = table.slots();
            float[] scores = new float[nq * bt];
            float[] sinkScores = qSink == null ? null : new float[nq * bt];
            boolean[] chosen = slots == null ? null : new boolean[bt];
            int cursor = 0;
            for (int b = 0; b < table.blockCount(); b++) {
                Block block = table.block(b);
                int from = 0, to = block.used();
                if (slots != null) {
                    while (cursor < slots.length && slots[cursor] < b * bt) cursor++;
                    int c0 = cursor;
                    while (cursor < slots.length && slots[cursor] < (b + 1) * bt) cursor++;
                    if (c0 == cursor) continue;
                    java.util.Arrays.fill(chosen, false);
                    for (int c = c0; c < cursor; c++) chosen[slots[c] - b * bt] = true;
                    from = slots[c0] - b * bt;
                    to = Math.min(to, slots[cursor - 1] - b * bt + 1);
                    if (from >= to) continue;
                }
                int n = to - from;
                if (!scoreBlock(block, from, to, qb, qSink, nq, qpos, scores, sinkScores, chosen, ctx, kvHead)) continue;
                for (int i = 0; i < nq; i++) {
                    if (qpos[i] < weightsFrom || l[i] == 0f) continue;
                    int j = g0 + i % gn;
                    float inv = 1f / l[i];
                    for (int s = from; s < to; s++) {
                        float sc = scores[i * n + s - from];
                        if (sc == Float.NEGATIVE_INFINITY) continue;
                        sums[j * total + b * bt + s] += (float) Math.exp(sc - m[i]) * inv;
                    }
                }
            }
        }

        void finish() {
            AttentionWeights w = null;
            if (tileSums != null) {
                for (int h = 0; h < tileSums.length; h++) {
                    for (float[] tile : tileSums[h]) {
                        for (int i = 0; i < tile.length; i++) weightSums[h][i] += tile[i];
                    }
                }
            }
            if (weightSums != null) {
                int[] slotCounts = new int[geometry.kvHeads()];
                for (int h = 0; h < slotCounts.length; h++) slotCounts[h] = seq.table(layer, h).slots();
                int counted = Math.max(0, entry.startPos() + entry.tokens() - Math.max(weightsFrom, entry.startPos()));
                w = new AttentionWeights(geometry.groupSize(), counted, slotCounts, weightSums);
            }
            seq.afterAttention(layer, queries, w, endsPrompt);
        }
    }

    @Override
    public void close() {
        if (workers != null && ownWorkers) workers.shutdown();
    }
}
