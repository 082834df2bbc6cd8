package dev.kvserve.kvcache.tier;

import dev.kvserve.kernels.kv.KvKernels;
import dev.kvserve.kvcache.BlockLostException;
import dev.kvserve.kvcache.format.BlockContext;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;

/**
 * An emulated computational-storage drive (InstInfer, methods.md §9.2–9.3): a storage-side worker
 * with its own threads and its own memory budget for read buffers, which reads the blocks a request
 * names straight from the SSD file (device-internal traffic), checks each block's CRC32C, and
 * computes flash-decoding-style partial attention over them with the same block codecs the runtime
 * uses. Only the queries go in and only the (max, sum, out) partials come back over the "link"; both
 * traffic kinds are counted in {@link TierStats}. Blocks whose SSD write is still in flight are read
 * from the write buffer, as a drive would serve them from its DRAM.
 */
final class CsdWorker implements AttentionOffload, AutoCloseable {

    private final TierStore store;
    private final ExecutorService threads;
    private final Semaphore memoryKiB;
    private final int budgetKiB;

    CsdWorker(TierStore store, int threads, long memoryBytes) {
        this.store = store;
        ThreadPoolExecutor pool = (ThreadPoolExecutor) Executors.newFixedThreadPool(threads, r -> {
            Thread t = new Thread(r, "kv-csd");
            t.setDaemon(true);
            return t;
        });
        pool.prestartAllCoreThreads();   // as the store's I/O threads: all there from the start
        this.threads = pool;
        this.budgetKiB = (int) Math.max(8, Math.min(Integer.MAX_VALUE, memoryBytes / 1024));
        this.memoryKiB = new Semaphore(budgetKiB);
    }

    @Override
    public CompletableFuture<PartialAttention> attend(Request request) {
        return CompletableFuture.supplyAsync(() -> compute(request), threads);
    }

    private PartialAttention compute(Request r) {
        int d = r.headDim(), nq = r.queryCount();
        store.csdRequests.incrementAndGet();
        store.csdLink.addAndGet(4L * r.queries().length + 4L * nq);
        PartialAttention p = PartialAttention.empty(nq, d);
        float[] m = p.max(), l = p.sum(), acc = p.out();
        BlockContext ctx = new BlockContext(d, r.rope());
        float[] scores = new float[0];
        for (AttentionOffload.BlockRef ref : r.blocks()) {
            TierStore.Copy c = store.own(ref.copy());
            int n = ref.positions().length;
            if (scores.length < nq * n) scores = new float[nq * n];
            int kib = (int) Math.min(budgetKiB, (c.extentBytes + 1023) / 1024);
            memoryKiB.acquireUninterruptibly(kib);
            try {
                MemorySegment block = store.hostSnapshot(c);
                if (block == null) {
                    long[] ext = store.extentOf(c);
                    ByteBuffer buf = store.readChecked(ext[0], ext[1], (int) ext[2], c.bytes, false);
                    store.csdInternal.addAndGet(ext[1]);
                    block = MemorySegment.ofBuffer(buf);
                }
                store.csdBlocks.incrementAndGet();
                ctx.set(r.layer(), r.kvHead(), ref.positions(), r.formatState());
                ref.codec().keyScores(block, 0, n, r.queries(), 0, d, nq, scores, n, ctx);
                boolean any = false;
                for (int s = 0; s < n; s++) {
                    int pos = ref.positions()[s];
                    boolean ok = pos >= 0 && (ref.chosen() == null || ref.chosen()[s]);
                    for (int i = 0; i < nq; i++) {
                        if (ok && pos <= r.queryPositions()[i]) any = true;
                        else scores[i * n + s] = Float.NEGATIVE_INFINITY;
                    }
                }
                if (!any) continue;
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
                ref.codec().addValues(block, 0, n, scores, n, nq, acc, 0, d, ctx);
            } catch (BlockLostException e) {
                store.lost.incrementAndGet();
                throw e;
            } finally {
                memoryKiB.release(kib);
            }
        }
        store.csdLink.addAndGet(p.linkBytes());
        return p;
    }

    @Override
    public void close() {
        threads.shutdown();
        try {
            threads.awaitTermination(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
