package dev.kvserve.kernels.cpu;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * A fixed set of daemon threads that run one chunked task at a time with the calling thread.
 *
 * <p>Why not an ExecutorService or ForkJoin: a decode step issues hundreds of small matmuls a
 * second per layer, each worth tens of microseconds. Submitting futures allocates and hands off
 * through queues; here a call publishes a preallocated {@link Task} by bumping a volatile
 * generation counter, workers claim chunk indices from one atomic counter (so a core that the
 * noisy machine steals simply takes fewer chunks), and the caller works too instead of waiting.
 * Nothing is allocated per call. Idle workers spin briefly (the next op usually follows within
 * microseconds) and then park, so an idle backend costs no CPU.
 */
public final class CpuThreadPool implements AutoCloseable {

    /** One parallel op: {@link #run} is called once for every chunk index in [0, chunks). */
    public interface Task {
        void run(int chunk);
    }

    /** How long an idle thread spins before parking; covers the gap between consecutive ops. */
    private static final long SPIN_NANOS = 50_000;

    private final int parallelism;
    private final Thread[] workers;

    private volatile int generation;
    private volatile Task task;
    private volatile int chunkCount;
    private final AtomicInteger nextChunk = new AtomicInteger();
    private final AtomicInteger busyWorkers = new AtomicInteger();
    private final AtomicInteger parkedMask = new AtomicInteger();
    private volatile Thread waitingCaller;
    private volatile Throwable failure;
    private volatile boolean closed;

    /**
     * @param parallelism threads that share each task, counting the caller: {@code parallelism - 1}
     *                    daemon workers named kvserve-cpu-1 .. kvserve-cpu-(parallelism-1) are started
     */
    public CpuThreadPool(int parallelism) {
        if (parallelism < 1 || parallelism > 1024) {
            throw new IllegalArgumentException("thread count must be in 1..1024, got " + parallelism);
        }
        this.parallelism = parallelism;
        this.workers = new Thread[parallelism - 1];
        for (int i = 0; i < workers.length; i++) {
            int index = i;
            Thread t = new Thread(() -> workerLoop(index), "kvserve-cpu-" + (i + 1));
            t.setDaemon(true);
            workers[i] = t;
        }
        for (Thread t : workers) t.start();
    }

    public int parallelism() {
        return parallelism;
    }

    /**
     * Runs {@code task.run(c)} for every c in [0, chunks), spread over the pool and the calling
     * thread, and returns when all have finished. Not reentrant: one caller at a time.
     */
    public void run(Task task, int chunks) {
        if (closed) throw new IllegalStateException("thread pool is closed");
        if (chunks <= 0) return;
        if (chunks == 1 || workers.length == 0) {
            for (int c = 0; c < chunks; c++) task.run(c);
            return;
        }
        this.task = task;
        this.chunkCount = chunks;
        this.failure = null;
        nextChunk.set(0);
        busyWorkers.set(workers.length);
        generation++; // volatile write: publishes the fields above to the workers
        int parked = parkedMask.get();
        if (parked != 0) {
            for (int i = 0; i < workers.length; i++) {
                if (i >= 31 || (parked & (1 << i)) != 0) LockSupport.unpark(workers[i]);
            }
        }
        Throwable own = null;
        try {
            drain(task, chunks);
        } catch (Throwable t) {
            own = t;
            nextChunk.set(chunks);
        }
        awaitWorkers();
        this.task = null;
        Throwable failed = own != null ? own : failure;
        if (failed != null) {
            if (failed instanceof RuntimeException re) throw re;
            if (failed instanceof Error e) throw e;
            throw new IllegalStateException("parallel task failed", failed);
        }
    }

    private void drain(Task task, int chunks) {
        for (int c = nextChunk.getAndIncrement(); c < chunks; c = nextChunk.getAndIncrement()) {
            task.run(c);
        }
    }

    private void awaitWorkers() {
        long start = System.nanoTime();
        while (busyWorkers.get() != 0) {
            if (System.nanoTime() - start < SPIN_NANOS) {
                Thread.onSpinWait();
            } else {
                waitingCaller = Thread.currentThread();
                if (busyWorkers.get() != 0) LockSupport.park(this);
                waitingCaller = null;
            }
        }
    }

    private void workerLoop(int index) {
        int seen = 0;
        int bit = index < 31 ? 1 << index : 0;
        while (true) {
            long start = System.nanoTime();
            while (generation == seen && !closed) {
                if (System.nanoTime() - start < SPIN_NANOS) {
                    Thread.onSpinWait();
                } else {
                    // Announce the park before re-checking, so that a caller bumping the generation
                    // either sees the flag and unparks us or we see its new generation.
                    if (bit != 0) parkedMask.getAndUpdate(m -> m | bit);
                    if (generation == seen && !closed) LockSupport.park(this);
                    if (bit != 0) parkedMask.getAndUpdate(m -> m & ~bit);
                }
            }
            if (closed) return;
            seen = generation;
            Task t = task;
            int n = chunkCount;
            try {
                if (t != null) drain(t, n);
            } catch (Throwable e) {
                failure = e;
                nextChunk.set(n);
            }
            if (busyWorkers.decrementAndGet() == 0) {
                Thread caller = waitingCaller;
                if (caller != null) LockSupport.unpark(caller);
            }
        }
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        for (Thread t : workers) LockSupport.unpark(t);
        for (Thread t : workers) {
            try {
                t.join(1000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }
}
