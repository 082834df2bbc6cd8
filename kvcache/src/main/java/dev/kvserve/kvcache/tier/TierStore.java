package dev.kvserve.kvcache.tier;

import dev.kvserve.kvcache.BlockLostException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.zip.CRC32C;

/**
 * The lower tiers shared by the sequences of one cache manager under one offload spec: host RAM
 * (off-heap, its own byte budget) and, optionally, one SSD file (its own byte budget) in 4 KiB-aligned
 * extents, written and read through {@link FileChannel} positional I/O on dedicated I/O threads.
 * Blocks enter in host RAM; when host RAM is full its least recently used copies spill to the SSD in
 * one batched write. Each SSD copy carries a CRC32C computed before the write and checked after every
 * read: a mismatch or a short read loses the block ({@link BlockLostException}), it is never used.
 * The file is truncated to nothing when no block lives in it and deleted when the store closes.
 */
public final class TierStore implements AutoCloseable {

    static final int ALIGN = 4096;
    /** Spill at least this many bytes per SSD write (one large sequential write instead of many small ones). */
    static final long SPILL_BATCH_BYTES = 256 * 1024;

    private final long hostBudget;
    private final long ssdBudget;
    private final long prefetchBudget;
    private final Path file;
    private final FileChannel channel;
    private final ExecutorService io;
    private final CsdWorker csd;

    // guarded by this
    private final LinkedHashMap<Copy, Boolean> hostLru = new LinkedHashMap<>(16, 0.75f, true);
    private final Map<Long, ArrayDeque<Long>> freeExtents = new HashMap<>();
    private long hostBytes;
    private long ssdBytes;
    private long ssdExtentBytes;
    private long fileEnd;
    private long stagedBytes;
    private int liveSsdCopies;
    private int writesInFlight;
    private boolean closed;

    final AtomicLong blocksDown = new AtomicLong(), bytesDown = new AtomicLong(), blocksUp = new AtomicLong(),
            bytesUp = new AtomicLong(), ssdWritten = new AtomicLong(), ssdRead = new AtomicLong(),
            prefetchIssued = new AtomicLong(), prefetchHits = new AtomicLong(), prefetchLate = new AtomicLong(),
            demandReads = new AtomicLong(), stallNanos = new AtomicLong(), lost = new AtomicLong(),
            csdRequests = new AtomicLong(), csdBlocks = new AtomicLong(), csdInternal = new AtomicLong(),
            csdLink = new AtomicLong();

    /**
     * @param hostBudget     bytes of block copies host RAM may hold
     * @param ssdDir         directory for the SSD file, or null for no SSD tier
     * @param ssdBudget      bytes of block copies the SSD file may hold
     * @param ioThreads      threads issuing SSD reads and writes
     * @param prefetchBudget bytes of prefetched SSD blocks waiting to be used
     * @param csdThreads     threads of the emulated computational-storage worker (0 = none)
     * @param csdMemory      memory budget of that worker's read buffers
     */
    public TierStore(long hostBudget, Path ssdDir, long ssdBudget, int ioThreads, long prefetchBudget, int csdThreads,
                     long csdMemory) {
        this.hostBudget = hostBudget;
        this.ssdBudget = ssdDir == null ? 0 : ssdBudget;
        this.prefetchBudget = prefetchBudget;
        if (ssdDir != null) {
            try {
                Files.createDirectories(ssdDir);
                this.file = Files.createTempFile(ssdDir, "kvserve-kv-", ".blocks");
                // not DELETE_ON_CLOSE: on Unix it unlinks at once, and the file should be inspectable while in use
                this.channel = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE);
                file.toFile().deleteOnExit();
            } catch (IOException e) {
                throw new IllegalArgumentException("cannot create the SSD tier file in " + ssdDir + ": " + e.getMessage(), e);
            }
            ThreadPoolExecutor pool = (ThreadPoolExecutor) Executors.newFixedThreadPool(ioThreads, r -> {
                Thread t = new Thread(r, "kv-ssd-io");
                t.setDaemon(true);
                return t;
            });
            // Started with the store, not at its first write: a store's threads are all there from the
            // start (a server makes its stores at start-up), and none appear later.
            pool.prestartAllCoreThreads();
            this.io = pool;
        } else {
            this.file = null;
            this.channel = null;
            this.io = null;
        }
        this.csd = csdThreads > 0 && ssdDir != null ? new CsdWorker(this, csdThreads, csdMemory) : null;
    }

    /** Where one block's copy is: host RAM, an SSD write in flight (both), or the SSD. */
    public final class Copy implements StoredBlock {
        final long bytes;
        final long extentBytes;
        // guarded by TierStore.this
        Arena arena;
        MemorySegment host;
        long offset = -1;
        int crc;
        CompletableFuture<Void> writing;
        CompletableFuture<ByteBuffer> staged;
        boolean freed;

        Copy(long bytes) {
            this.bytes = bytes;
            this.extentBytes = (bytes + ALIGN - 1) / ALIGN * ALIGN;
        }

        TierStore store() {
            return TierStore.this;
        }

        @Override
        public long bytes() {
            return bytes;
        }

        @Override
        public String tier() {
            synchronized (TierStore.this) {
                return host != null ? "host" : "ssd";
            }
        }

        @Override
        public void free() {
            TierStore.this.free(this);
        }

        /** Offset of the copy in the SSD file, or -1 while it is in host RAM only (for tests). */
        public long fileOffset() {
            synchronized (TierStore.this) {
                return host == null ? offset : -1;
            }
        }
    }

    public boolean hasSsd() {
        return channel != null;
    }

    /** The SSD file, or null. */
    public Path file() {
        return file;
    }

    /** The computational-storage worker, or null when the spec has none. */
    public AttentionOffload csd() {
        return csd;
    }

    public long hostBudget() {
        return hostBudget;
    }

    /** True when a copy of {@code bytes} more can be taken (host RAM, or SSD after spilling). */
    public synchronized boolean canTake(long bytes) {
        if (hostBytes + bytes <= hostBudget) return true;
        long extent = (bytes + ALIGN - 1) / ALIGN * ALIGN;
        return channel != null && ssdExtentBytes + extent <= ssdBudget;
    }

    /**
     * Copies {@code src} into the lower tiers and returns the copy. Host RAM first; when it is full,
     * its coldest copies spill to the SSD (or, if nothing in host RAM can move, this block goes
     * straight to the SSD).
     *
     * @throws IllegalStateException when neither tier has room ({@link #canTake} said no)
     */
    public Copy put(MemorySegment src) {
        long bytes = src.byteSize();
        Copy c = new Copy(bytes);
        List<Copy> spill = null;
        synchronized (this) {
            checkOpen();
            if (hostBytes + bytes > hostBudget && channel != null) spill = chooseSpill(bytes);
            if (hostBytes + bytes <= hostBudget) {
                toHost(c, src);
            } else if (channel != null && ssdExtentBytes + c.extentBytes <= ssdBudget) {
                // host RAM cannot make room: write this one through a transient buffer
                toHost(c, src);
                hostLru.remove(c);
                if (spill == null) spill = new ArrayList<>();
                spill.add(c);
            } else {
                throw new IllegalStateException("offload tiers are full: host " + hostBytes + "/" + hostBudget + " bytes, ssd "
                        + ssdExtentBytes + "/" + ssdBudget + " bytes");
            }
        }
        blocksDown.incrementAndGet();
        bytesDown.addAndGet(bytes);
        if (spill != null && !spill.isEmpty()) writeBatch(spill);
        return c;
    }

    private void toHost(Copy c, MemorySegment src) {
        c.arena = Arena.ofShared();
        c.host = c.arena.allocate(c.bytes, 64);
        MemorySegment.copy(src, 0, c.host, 0, c.bytes);
        hostBytes += c.bytes;
        hostLru.put(c, Boolean.TRUE);
    }

    /** Least recently used host copies totalling at least max(need, batch) bytes, removed from the LRU. */
    private List<Copy> chooseSpill(long need) {
        List<Copy> out = new ArrayList<>();
        long target = Math.max(need, Math.min(SPILL_BATCH_BYTES, hostBudget / 4));
        long freed = 0, extents = 0;
        Iterator<Copy> it = hostLru.keySet().iterator();
        while (it.hasNext() && freed < target) {
            Copy c = it.next();
            if (ssdExtentBytes + extents + c.extentBytes > ssdBudget) break;
            it.remove();
            out.add(c);
            freed += c.bytes;
            extents += c.extentBytes;
        }
        // the spilled copies' host memory is counted until their write completes
        return out;
    }

    /** Gives the copies file extents (contiguous when fresh) and writes them with as few large writes as possible. */
    private void writeBatch(List<Copy> batch) {
        long[] offsets = new long[batch.size()];
        synchronized (this) {
            for (int i = 0; i < batch.size(); i++) {
                Copy c = batch.get(i);
                ArrayDeque<Long> free = freeExtents.get(c.extentBytes);
                long off;
                if (free != null && !free.isEmpty()) {
                    off = free.pop();
                } else {
                    off = fileEnd;
                    fileEnd += c.extentBytes;
                }
                offsets[i] = off;
                c.offset = off;
                ssdExtentBytes += c.extentBytes;
                ssdBytes += c.bytes;
                liveSsdCopies++;
                CRC32C crc = new CRC32C();
                crc.update(c.host.asByteBuffer());
                c.crc = (int) crc.getValue();
            }
            writesInFlight++;
        }
        // runs of consecutive extents become one write each
        Integer[] order = new Integer[batch.size()];
        for (int i = 0; i < order.length; i++) order[i] = i;
        java.util.Arrays.sort(order, Comparator.comparingLong(i -> offsets[i]));
        List<CompletableFuture<Void>> writes = new ArrayList<>();
        int i = 0;
        while (i < order.length) {
            int j = i + 1;
            long end = offsets[order[i]] + batch.get(order[i]).extentBytes;
            while (j < order.length && offsets[order[j]] == end) {
                end += batch.get(order[j]).extentBytes;
                j++;
            }
            long start = offsets[order[i]];
            List<Copy> run = new ArrayList<>();
            for (int k = i; k < j; k++) run.add(batch.get(order[k]));
            ByteBuffer buf = ByteBuffer.allocateDirect((int) (end - start));
            MemorySegment dst = MemorySegment.ofBuffer(buf);
            long at = 0;
            for (Copy c : run) {
                MemorySegment.copy(c.host, 0, dst, at, c.bytes);
                at += c.extentBytes;
            }
            writes.add(CompletableFuture.runAsync(() -> writeFully(buf, start), io));
            i = j;
        }
        CompletableFuture<Void> all = CompletableFuture.allOf(writes.toArray(new CompletableFuture[0]));
        synchronized (this) {
            for (Copy c : batch) c.writing = all;
        }
        all.whenComplete((v, err) -> writeDone(batch, err));
    }

    private void writeFully(ByteBuffer buf, long position) {
        try {
            long pos = position;
            while (buf.hasRemaining()) pos += channel.write(buf, pos);
            ssdWritten.addAndGet(buf.capacity());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private synchronized void writeDone(List<Copy> batch, Throwable err) {
        writesInFlight--;
        for (Copy c : batch) {
            c.writing = null;
            if (err != null && !c.freed) {
                // the write failed: keep the block in host RAM (over budget rather than lost)
                releaseExtent(c);
                hostLru.put(c, Boolean.TRUE);
                continue;
            }
            if (c.host != null) {
                hostBytes -= c.bytes;
                c.arena.close();
                c.arena = null;
                c.host = null;
            }
            if (c.freed) releaseExtent(c);
        }
        truncateIfEmpty();
        notifyAll();
    }

    private void releaseExtent(Copy c) {
        if (c.offset < 0) return;
        freeExtents.computeIfAbsent(c.extentBytes, k -> new ArrayDeque<>()).push(c.offset);
        ssdExtentBytes -= c.extentBytes;
        ssdBytes -= c.bytes;
        liveSsdCopies--;
        c.offset = -1;
    }

    private void truncateIfEmpty() {
        if (channel == null || closed || liveSsdCopies > 0 || writesInFlight > 0 || fileEnd == 0) return;
        try {
            channel.truncate(0);
        } catch (IOException e) {
            throw new UncheckedIOException("truncating the SSD tier file", e);
        }
        fileEnd = 0;
        freeExtents.clear();
    }

    synchronized void free(Copy c) {
        if (c.freed) return;
        c.freed = true;
        if (c.staged != null) {
            stagedBytes -= c.extentBytes;
            c.staged = null;
        }
        if (c.writing != null) return; // writeDone frees it
        if (c.host != null) {
            hostLru.remove(c);
            hostBytes -= c.bytes;
            c.arena.close();
            c.arena = null;
            c.host = null;
        }
        releaseExtent(c);
        truncateIfEmpty();
    }

    /**
     * Starts reading the SSD copies among {@code copies} into staging buffers on the I/O threads
     * (adjacent extents in one read), within the prefetch budget. Host copies need no prefetch.
     */
    public void prefetch(List<? extends StoredBlock> copies) {
        if (channel == null || copies.isEmpty()) return;
        List<Copy> todo = new ArrayList<>();
        synchronized (this) {
            if (closed) return;
            for (StoredBlock s : copies) {
                Copy c = own(s);
                if (c.freed || c.host != null || c.offset < 0 || c.staged != null) continue;
                if (stagedBytes + c.extentBytes > prefetchBudget) break;
                stagedBytes += c.extentBytes;
                todo.add(c);
            }
            todo.sort(Comparator.comparingLong(c -> c.offset));
            int i = 0;
            while (i < todo.size()) {
                int j = i + 1;
                long end = todo.get(i).offset + todo.get(i).extentBytes;
                while (j < todo.size() && todo.get(j).offset == end) end += todo.get(j++).extentBytes;
                List<Copy> run = List.copyOf(todo.subList(i, j));
                long start = run.getFirst().offset;
                long len = end - start;
                CompletableFuture<ByteBuffer> read = CompletableFuture.supplyAsync(() -> readRun(start, len), io);
                for (Copy c : run) {
                    long rel = c.offset - start;
                    int crc = c.crc;
                    c.staged = read.thenApply(buf -> {
                        int have = (int) Math.max(0, Math.min(c.bytes, buf.limit() - rel));
                        return checked(buf.slice((int) Math.min(rel, buf.limit()), have), crc, c.bytes);
                    });
                }
                prefetchIssued.addAndGet(run.size());
                i = j;
            }
        }
    }

    private ByteBuffer readRun(long position, long length) {
        return readRun(position, length, true);
    }

    /** {@code byRuntime}: counted in {@code ssdBytesRead}; the CSD worker's reads are device-internal and counted apart. */
    private ByteBuffer readRun(long position, long length, boolean byRuntime) {
        ByteBuffer buf = ByteBuffer.allocateDirect((int) length);
        try {
            long pos = position;
            while (buf.hasRemaining()) {
                int n = channel.read(buf, pos);
                if (n < 0) break; // truncated file: the checksum of the missing part fails below
                pos += n;
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        if (byRuntime) ssdRead.addAndGet(buf.position());
        buf.flip();
        return buf;
    }

    /** The block's bytes if they are all there and match the CRC32C; otherwise the block is lost. */
    static ByteBuffer checked(ByteBuffer block, int crc, long bytes) {
        if (block.remaining() < bytes) {
            throw new BlockLostException("SSD copy truncated (" + block.remaining() + " of " + bytes + " bytes)", bytes);
        }
        CRC32C c = new CRC32C();
        c.update(block.duplicate());
        if ((int) c.getValue() != crc) throw new BlockLostException("SSD copy failed its CRC32C check", bytes);
        return block;
    }

    ByteBuffer readChecked(long offset, long extentBytes, int crc, long bytes) {
        return readChecked(offset, extentBytes, crc, bytes, true);
    }

    ByteBuffer readChecked(long offset, long extentBytes, int crc, long bytes, boolean byRuntime) {
        ByteBuffer run = readRun(offset, extentBytes, byRuntime);
        if (run.limit() < bytes) return checked(run, crc, bytes);
        return checked(run.slice(0, (int) bytes), crc, bytes);
    }

    /**
     * Copies the block's bytes into {@code dst}: from host RAM, from a finished prefetch (a hit), by
     * waiting on an unfinished one, or by reading it now on the I/O threads (a miss).
     *
     * @throws BlockLostException when the SSD copy is corrupt or truncated
     */
    public void readInto(StoredBlock stored, MemorySegment dst) {
        Copy c = own(stored);
        CompletableFuture<ByteBuffer> pending;
        synchronized (this) {
            if (c.freed) throw new IllegalStateException("reading a freed block copy");
            if (c.host != null) {
                MemorySegment.copy(c.host, 0, dst, 0, c.bytes);
                hostLru.get(c); // access order: recently used
                up(c);
                return;
            }
            pending = c.staged;
            c.staged = null;
            if (pending != null) {
                stagedBytes -= c.extentBytes;
                if (pending.isDone()) prefetchHits.incrementAndGet();
                else prefetchLate.incrementAndGet();
            } else {
                demandReads.incrementAndGet();
                long off = c.offset, ext = c.extentBytes, bytes = c.bytes;
                int crc = c.crc;
                pending = CompletableFuture.supplyAsync(() -> readChecked(off, ext, crc, bytes), io);
            }
        }
        long t0 = System.nanoTime();
        ByteBuffer buf;
        try {
            buf = pending.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while reading a KV block from SSD", e);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof BlockLostException lostBlock) {
                lost.incrementAndGet();
                throw lostBlock;
            }
            lost.incrementAndGet();
            throw new BlockLostException("SSD read failed: " + e.getCause(), c.bytes);
        } finally {
            stallNanos.addAndGet(System.nanoTime() - t0);
        }
        MemorySegment.copy(MemorySegment.ofBuffer(buf), 0, dst, 0, c.bytes);
        up(c);
    }

    private void up(Copy c) {
        blocksUp.incrementAndGet();
        bytesUp.addAndGet(c.bytes);
    }

    /** For the CSD worker: a snapshot of the copy's host bytes (write buffer), or null when it must be read from the file. */
    synchronized MemorySegment hostSnapshot(Copy c) {
        if (c.host == null) return null;
        MemorySegment snap = MemorySegment.ofBuffer(ByteBuffer.allocateDirect((int) c.bytes));
        MemorySegment.copy(c.host, 0, snap, 0, c.bytes);
        return snap;
    }

    synchronized long[] extentOf(Copy c) {
        if (c.freed) throw new IllegalStateException("attending over a freed block copy");
        return new long[] {c.offset, c.extentBytes, c.crc};
    }

    Copy own(StoredBlock s) {
        if (!(s instanceof Copy c) || c.store() != this) {
            throw new IllegalArgumentException("block copy belongs to another tier store");
        }
        return c;
    }

    /** Waits until every SSD write issued so far has completed (swap-out returns only then). */
    public synchronized void awaitWrites() {
        while (writesInFlight > 0) {
            try {
                wait();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted waiting for SSD writes", e);
            }
        }
    }

    public synchronized TierStats stats() {
        return new TierStats(hostBytes, ssdBytes, fileEnd, blocksDown.get(), bytesDown.get(), blocksUp.get(), bytesUp.get(),
                ssdWritten.get(), ssdRead.get(), prefetchIssued.get(), prefetchHits.get(), prefetchLate.get(),
                demandReads.get(), stallNanos.get(), lost.get(), csdRequests.get(), csdBlocks.get(), csdInternal.get(),
                csdLink.get());
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("tier store is closed");
    }

    /** Waits for writes in flight, stops the I/O and CSD threads, deletes the SSD file, frees host RAM. */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) return;
            while (writesInFlight > 0) {
                try {
                    wait();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    break;
                }
            }
            closed = true;
            for (Copy c : hostLru.keySet()) {
                if (c.arena != null) c.arena.close();
                c.arena = null;
                c.host = null;
            }
            hostLru.clear();
            hostBytes = 0;
        }
        if (csd != null) csd.close();
        if (io != null) {
            io.shutdown();
            try {
                io.awaitTermination(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        if (channel != null) {
            try {
                channel.close();
                Files.deleteIfExists(file);
            } catch (IOException e) {
                throw new UncheckedIOException("deleting the SSD tier file " + file, e);
            }
        }
    }
}
