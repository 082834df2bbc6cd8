package dev.kvserve.kernels.cuda;

import dev.kvserve.nativ.cuda.KernelArgs;
import java.lang.foreign.MemorySegment;

/**
 * KV-cache kernels of a {@link CudaBackend}: writing new keys/values into paged blocks (quantizing
 * to INT8/INT4 on the way), decode attention straight from the blocks, and the per-token, per-cluster
 * and per-page scores that eviction and selection policies need (/work/shared/methods.md: L2-norm,
 * HashEvict, ClusterKV, Quest). Buffers are device segments of the backend; host int arrays
 * (slots, block tables) are uploaded by the call. Layout: {@link PagedKvLayout}.
 */
public final class CudaKvKernels {

    /** Tokens of one sequence one attention block walks; longer contexts are split across blocks. */
    static final int SPLIT_TOKENS = 256;
    private static final int MAX_SPLITS = 1024;

    /** How per-query-head scores are reduced over the query heads sharing a KV head. */
    public enum GroupReduce { MEAN, MAX, SUM }

    private final CudaBackend backend;

    CudaKvKernels(CudaBackend backend) {
        this.backend = backend;
    }

    /** A zeroed pool of {@code blocks} blocks in {@code layout}. */
    public MemorySegment allocatePool(PagedKvLayout layout, int blocks) {
        if (blocks <= 0) throw new IllegalArgumentException("pool of " + blocks + " blocks");
        return backend.allocate(layout.blockBytes() * blocks);
    }

    private int poolBlocks(PagedKvLayout layout, MemorySegment pool, String what) {
        if (pool.byteSize() < layout.blockBytes()) {
            throw new IllegalArgumentException(what + " of " + pool.byteSize() + " bytes holds no block of " + layout.blockBytes());
        }
        backend.requireDevice(pool, pool.byteSize(), 16, what);
        return Math.toIntExact(pool.byteSize() / layout.blockBytes());
    }

    /**
     * Stores row r of {@code src} ([rows][kvHeads*headDim] fp32) as the token in slot
     * {@code slots[r]} (block * blockTokens + offset; negative = skip), quantizing for INT8/INT4.
     */
    public void write(PagedKvLayout layout, MemorySegment pool, MemorySegment src, int[] slots, int rows) {
        backend.requireOpen();
        if (rows <= 0) return;
        int blocks = poolBlocks(layout, pool, "KV pool");
        long capacity = (long) blocks * layout.blockTokens();
        for (int r = 0; r < rows; r++) {
            if (slots[r] >= capacity) {
                throw new IllegalArgumentException("slot " + slots[r] + " beyond the pool's " + capacity + " token slots");
            }
        }
        long sp = backend.requireDevice(src, 4L * rows * layout.kvHeads() * layout.headDim(), "KV write source");
        MemorySegment slotBuf = backend.uploadInts("kv.slots", slots, rows);
        KernelArgs args = new KernelArgs().ptr(pool).ptr(sp).ptr(slotBuf).i32(layout.kvHeads()).i32(layout.headDim())
                .i32(layout.blockTokens()).i32(layout.group()).i64(layout.headBytes()).i64(layout.blockBytes());
        backend.kernels().launch(Kernels.kvWrite(layout.format()), rows, layout.kvHeads(), 1, args);
    }

    /**
     * Decode attention: for each query row r, softmax(scale * q·K) · V over tokens
     * {@code 0 .. rowCtx[r]-1} of sequence {@code rowSeq[r]}, whose blocks are
     * {@code blockTables[rowSeq[r]*maxBlocks ...]}. {@code q} and {@code out} are
     * [rows][heads*headDim] fp32; heads is a multiple of kvHeads (GQA). A row with rowCtx 0 gets
     * zeros.
     */
    public void attention(PagedKvLayout layout, MemorySegment kPool, MemorySegment vPool, MemorySegment q,
                          MemorySegment out, int heads, int rows, int[] blockTables, int maxBlocks, int[] rowSeq,
                          int[] rowCtx, float scale) {
        backend.requireOpen();
        if (rows <= 0) return;
        int H = layout.kvHeads(), D = layout.headDim(), B = layout.blockTokens();
        if (heads <= 0 || heads % H != 0) {
            throw new IllegalArgumentException(heads + " query heads do not group over " + H + " KV heads");
        }
        int blocks = Math.min(poolBlocks(layout, kPool, "K pool"), poolBlocks(layout, vPool, "V pool"));
        int maxCtx = 0;
        for (int r = 0; r < rows; r++) {
            int seq = rowSeq[r], ctx = rowCtx[r];
            if (seq < 0 || (long) (seq + 1) * maxBlocks > blockTables.length) {
                throw new IllegalArgumentException("row " + r + " names sequence " + seq + " beyond the block tables");
            }
            if (ctx < 0 || ctx > (long) maxBlocks * B) {
                throw new IllegalArgumentException("row " + r + " sees " + ctx + " tokens; its table holds " + maxBlocks * B);
            }
            for (int i = 0; i < (ctx + B - 1) / B; i++) {
                int b = blockTables[seq * maxBlocks + i];
                if (b < 0 || b >= blocks) {
                    throw new IllegalArgumentException("sequence " + seq + " block " + i + " is " + b
                            + ", outside the pool's " + blocks + " blocks");
                }
            }
            maxCtx = Math.max(maxCtx, ctx);
        }
        long qBytes = 4L * rows * heads * D;
        long qp = backend.requireDevice(q, qBytes, "attention queries");
        long op = backend.requireDevice(out, qBytes, "attention output");
        int splitTokens = SPLIT_TOKENS;
        while ((maxCtx + splitTokens - 1) / splitTokens > MAX_SPLITS) splitTokens *= 2;
        int splits = Math.max(1, (maxCtx + splitTokens - 1) / splitTokens);
        int cpl = D <= 32 ? 1 : D <= 64 ? 2 : D <= 128 ? 4 : 8;
        int group = heads / H, chunks = CudaBackend.ceilDiv(group, Kernels.ATTENTION_MAX_GROUP);

        long partials = (long) rows * heads * splits;
        MemorySegment partAcc = backend.scratch("attn.acc", 4 * partials * D);
        MemorySegment partMax = backend.scratch("attn.max", 4 * partials);
        MemorySegment partSum = backend.scratch("attn.sum", 4 * partials);
        MemorySegment tables = backend.uploadInts("attn.tables", blockTables, blockTables.length);
        MemorySegment seqs = backend.uploadInts("attn.rowSeq", rowSeq, rows);
        MemorySegment ctxs = backend.uploadInts("attn.rowCtx", rowCtx, rows);
        KernelArgs args = new KernelArgs().ptr(qp).ptr(kPool).ptr(vPool).ptr(tables).i32(maxBlocks).ptr(seqs).ptr(ctxs)
                .ptr(partAcc).ptr(partMax).ptr(partSum).i32(heads).i32(H).i32(D).i32(B).i32(layout.group())
                .i64(layout.headBytes()).i64(layout.blockBytes()).i32(splitTokens).f32(scale);
        backend.kernels().launch(Kernels.pagedAttention(layout.format(), cpl), rows, H * chunks, splits, args);
        KernelArgs merge = new KernelArgs().ptr(partAcc).ptr(partMax).ptr(partSum).ptr(op).i32(heads).i32(D).i32(splits);
        backend.kernels().launch(Kernels.PAGED_ATTN_MERGE, rows, heads, 1, merge);
    }

    // ------------------------------------------------------------------ eviction scores

    /** L2-norm eviction score: {@code out[h][i] = ||K_i||} for tokens i < n of one sequence. */
    public void keyNorms(PagedKvLayout layout, MemorySegment kPool, int[] blockTable, int n, MemorySegment out) {
        backend.requireOpen();
        if (n <= 0) return;
        checkTable(layout, kPool, blockTable, n);
        long op = backend.requireDevice(out, 4L * layout.kvHeads() * n, "key norms output");
        MemorySegment table = backend.uploadInts("norms.table", blockTable, (n + layout.blockTokens() - 1) / layout.blockTokens());
        KernelArgs args = new KernelArgs().ptr(kPool).ptr(table).i32(n).ptr(op).i32(layout.kvHeads())
                .i32(layout.headDim()).i32(layout.blockTokens()).i32(layout.group()).i64(layout.headBytes())
                .i64(layout.blockBytes());
        backend.kernels().launch(Kernels.keyNorms(layout.format()), CudaBackend.ceilDiv(n, 4), layout.kvHeads(), 1, args);
    }

    /** {@code out[r][h] = ||x[r][h]||} for fresh fp32 rows of {@code heads} heads of {@code headDim}. */
    public void rowNorms(MemorySegment x, int rows, int heads, int headDim, MemorySegment out) {
        backend.requireOpen();
        if (rows <= 0) return;
        long xp = backend.requireDevice(x, 4L * rows * heads * headDim, "norm input");
        long op = backend.requireDevice(out, 4L * rows * heads, "norm output");
        backend.kernels().launch(Kernels.L2NORM_ROWS, rows, 1, 1, new KernelArgs().ptr(xp).i32(heads).i32(headDim).ptr(op));
    }

    /**
     * HashEvict signatures: bit j of {@code out[r][h]} (uint64) is set when
     * {@code proj[h][j] · x[r][h] > 0}, j < bits ≤ 64. {@code proj} is fp32 [bits][headDim] per head,
     * {@code projHeadStride} floats apart (0: one projection for all heads).
     */
    public void simhash(MemorySegment x, int rows, int heads, int headDim, MemorySegment proj, long projHeadStride,
                        int bits, MemorySegment out) {
        backend.requireOpen();
        if (bits <= 0 || bits > Kernels.SIMHASH_MAX_BITS) {
            throw new IllegalArgumentException("SimHash signatures have 1.." + Kernels.SIMHASH_MAX_BITS + " bits, not " + bits);
        }
        if (rows <= 0) return;
        long xp = backend.requireDevice(x, 4L * rows * heads * headDim, "simhash input");
        long pp = backend.requireDevice(proj, 4L * ((heads - 1) * projHeadStride + (long) bits * headDim), "simhash projection");
        long op = backend.requireDevice(out, 8L * rows * heads, 8, "simhash output");
        KernelArgs args = new KernelArgs().ptr(xp).i32(heads).i32(headDim).ptr(pp).i64(projHeadStride).i32(bits).ptr(op);
        backend.kernels().launch(Kernels.SIMHASH, rows, heads, 1, args);
    }

    /**
     * HashEvict scores of one sequence: {@code out[h][i]} = Hamming distance between token i's key
     * signature ({@code keySigs}, uint64 indexed [slot][kvHeads]) and the query signatures
     * ({@code querySigs}, uint64 [heads]) of the heads sharing KV head h, reduced over the group;
     * added to out when {@code accumulate}.
     */
    public void hammingScores(PagedKvLayout layout, MemorySegment querySigs, int heads, MemorySegment keySigs,
                              int[] blockTable, int n, GroupReduce reduce, boolean accumulate, MemorySegment out) {
        backend.requireOpen();
        if (n <= 0) return;
        int H = layout.kvHeads(), B = layout.blockTokens();
        if (heads % H != 0) throw new IllegalArgumentException(heads + " query heads do not group over " + H);
        long qp = backend.requireDevice(querySigs, 8L * heads, 8, "query signatures");
        int nb = (n + B - 1) / B;
        int maxBlock = 0;
        for (int i = 0; i < nb; i++) maxBlock = Math.max(maxBlock, blockTable[i]);
        long kp = backend.requireDevice(keySigs, 8L * (maxBlock + 1) * B * H, 8, "key signatures");
        long op = backend.requireDevice(out, 4L * H * n, "hamming output");
        MemorySegment table = backend.uploadInts("hamming.table", blockTable, nb);
        KernelArgs args = new KernelArgs().ptr(qp).ptr(kp).ptr(table).i32(n).i32(heads).i32(H).i32(B)
                .i32(reduce.ordinal()).i32(accumulate ? 1 : 0).ptr(op);
        backend.kernels().launch(Kernels.HAMMING, CudaBackend.ceilDiv(n, 128), H, 1, args);
    }

    // ------------------------------------------------------------------ ClusterKV

    /**
     * {@code out[r][h][j] = q[r][h] · centroid j of KV head h/G}; the centroids of row r are fp32
     * [kvHeads][nlist][headDim] at {@code centroids + r*centroidRowStride} floats.
     */
    public void clusterScores(MemorySegment q, int rows, int heads, int kvHeads, int headDim, MemorySegment centroids,
                              long centroidRowStride, int nlist, MemorySegment out) {
        backend.requireOpen();
        if (rows <= 0) return;
        if (heads % kvHeads != 0) throw new IllegalArgumentException(heads + " query heads do not group over " + kvHeads);
        long qp = backend.requireDevice(q, 4L * rows * heads * headDim, "cluster query");
        long cp = backend.requireDevice(centroids,
                4L * ((rows - 1) * centroidRowStride + (long) kvHeads * nlist * headDim), "centroids");
        long op = backend.requireDevice(out, 4L * rows * heads * nlist, "cluster scores output");
        KernelArgs args = new KernelArgs().ptr(qp).ptr(cp).i64(centroidRowStride).i32(heads).i32(kvHeads).i32(headDim)
                .i32(nlist).ptr(op);
        backend.kernels().launch(Kernels.CLUSTER_SCORES, rows * heads, CudaBackend.ceilDiv(nlist, 8), 1, args);
    }

    /**
     * ClusterKV recall for one sequence: for each of {@code rowHeads} (= rows * heads) query heads,
     * walks its clusters in {@code order} ([rowHeads][kc] int32, best first, -1 terminated, e.g. from
     * {@link CudaBackend#topKOnDevice} over {@link #clusterScores}) and takes their member tokens
     * (int32 {@code tokens} [kvHeads][nTok], sorted by cluster, with {@code offsets}
     * [kvHeads][nlist+1]) until {@code budget}. Writes token indices to {@code out} [rowHeads][budget]
     * (-1 padded) and counts to {@code outCount} [rowHeads].
     */
    public void clusterGather(MemorySegment order, int kc, int rowHeads, int heads, int kvHeads, MemorySegment offsets,
                              MemorySegment tokens, int nlist, int nTok, int budget, MemorySegment out,
                              MemorySegment outCount) {
        backend.requireOpen();
        if (kc > Kernels.CLUSTERKV_MAX_CLUSTERS) {
            throw new IllegalArgumentException("at most " + Kernels.CLUSTERKV_MAX_CLUSTERS + " clusters per query, not " + kc);
        }
        if (rowHeads <= 0 || budget <= 0) return;
        if (rowHeads % heads != 0 || heads % kvHeads != 0) {
            throw new IllegalArgumentException("bad head counts: rowHeads=" + rowHeads + " heads=" + heads + " kvHeads=" + kvHeads);
        }
        KernelArgs args = new KernelArgs().ptr(backend.requireDevice(order, 4L * rowHeads * kc, "cluster order")).i32(kc)
                .ptr(backend.requireDevice(offsets, 4L * kvHeads * (nlist + 1), "cluster offsets"))
                .ptr(backend.requireDevice(tokens, 4L * kvHeads * nTok, "cluster members")).i32(nlist).i32(nTok)
                .i32(heads).i32(kvHeads).i32(budget)
                .ptr(backend.requireDevice(out, 4L * rowHeads * budget, "recalled tokens"))
                .ptr(backend.requireDevice(outCount, 4L * rowHeads, "recalled counts"));
        backend.kernels().launch(Kernels.CLUSTERKV_GATHER, rowHeads, 1, 1, args);
    }

    // ------------------------------------------------------------------ Quest

    /**
     * Recomputes Quest page metadata of {@code blocks[i]} from its first {@code counts[i]} (≥ 1)
     * keys: per KV head and channel the min and max, into fp32 [poolBlocks][kvHeads][headDim]
     * arrays indexed by block id.
     */
    public void questBounds(PagedKvLayout layout, MemorySegment kPool, int[] blocks, int[] counts, int n,
                            MemorySegment minMeta, MemorySegment maxMeta) {
        backend.requireOpen();
        if (n <= 0) return;
        int poolBlocks = poolBlocks(layout, kPool, "K pool");
        for (int i = 0; i < n; i++) {
            if (blocks[i] < 0 || blocks[i] >= poolBlocks) throw new IllegalArgumentException("block " + blocks[i] + " outside the pool");
            if (counts[i] < 1 || counts[i] > layout.blockTokens()) {
                throw new IllegalArgumentException("block " + blocks[i] + " holds " + counts[i] + " tokens");
            }
        }
        long metaBytes = 4L * poolBlocks * layout.kvHeads() * layout.headDim();
        KernelArgs args = new KernelArgs().ptr(kPool).ptr(backend.uploadInts("quest.blocks", blocks, n))
                .ptr(backend.uploadInts("quest.counts", counts, n))
                .ptr(backend.requireDevice(minMeta, metaBytes, "Quest min metadata"))
                .ptr(backend.requireDevice(maxMeta, metaBytes, "Quest max metadata")).i32(layout.kvHeads())
                .i32(layout.headDim()).i32(layout.blockTokens()).i32(layout.group()).i64(layout.headBytes())
                .i64(layout.blockBytes());
        backend.kernels().launch(Kernels.questBounds(layout.format()), n, layout.kvHeads(), 1, args);
    }

    /**
     * Quest criticality: {@code out[r][h][p] = Σ_c max(q_c·max_c, q_c·min_c)} over page p
     * (block table entry p) of row r's sequence, -inf for p ≥ rowPages[r]; out is
     * [rows][heads][maxPages].
     */
    public void questScores(PagedKvLayout layout, MemorySegment q, int rows, int heads, MemorySegment minMeta,
                            MemorySegment maxMeta, int[] blockTables, int maxBlocks, int[] rowSeq, int[] rowPages,
                            int maxPages, MemorySegment out) {
        backend.requireOpen();
        if (rows <= 0 || maxPages <= 0) return;
        int H = layout.kvHeads(), D = layout.headDim();
        if (heads % H != 0) throw new IllegalArgumentException(heads + " query heads do not group over " + H);
        int metaBlocks = Math.toIntExact(minMeta.byteSize() / (4L * H * D));
        for (int r = 0; r < rows; r++) {
            if (rowPages[r] > maxBlocks || rowPages[r] > maxPages) {
                throw new IllegalArgumentException("row " + r + " has " + rowPages[r] + " pages; tables hold " + maxBlocks
                        + ", output " + maxPages);
            }
            for (int p = 0; p < rowPages[r]; p++) {
                int b = blockTables[rowSeq[r] * maxBlocks + p];
                if (b < 0 || b >= metaBlocks) throw new IllegalArgumentException("page block " + b + " outside the metadata");
            }
        }
        KernelArgs args = new KernelArgs().ptr(backend.requireDevice(q, 4L * rows * heads * D, "Quest query"))
                .ptr(backend.requireDevice(minMeta, 4L * metaBlocks * H * D, "Quest min metadata"))
                .ptr(backend.requireDevice(maxMeta, 4L * metaBlocks * H * D, "Quest max metadata"))
                .ptr(backend.uploadInts("quest.tables", blockTables, blockTables.length)).i32(maxBlocks)
                .ptr(backend.uploadInts("quest.rowSeq", rowSeq, rows))
                .ptr(backend.uploadInts("quest.rowPages", rowPages, rows)).i32(heads).i32(H).i32(D).i32(maxPages)
                .ptr(backend.requireDevice(out, 4L * rows * heads * maxPages, "Quest scores output"));
        backend.kernels().launch(Kernels.QUEST_SCORES, rows * heads, CudaBackend.ceilDiv(maxPages, 8), 1, args);
    }

    private void checkTable(PagedKvLayout layout, MemorySegment pool, int[] table, int n) {
        int blocks = poolBlocks(layout, pool, "K pool");
        int nb = (n + layout.blockTokens() - 1) / layout.blockTokens();
        if (table.length < nb) throw new IllegalArgumentException(n + " tokens need " + nb + " table entries, got " + table.length);
        for (int i = 0; i < nb; i++) {
            if (table[i] < 0 || table[i] >= blocks) {
                throw new IllegalArgumentException("block table entry " + i + " is " + table[i] + ", outside the pool's "
                        + blocks + " blocks");
            }
        }
    }
}
