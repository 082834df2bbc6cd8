package dev.kvserve.scheduler;

import dev.kvserve.kvcache.BlockLostException;
import dev.kvserve.kvcache.KvBudgetExceededException;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The engine thread: applies submissions and cancellations between steps, asks the
 * {@link Scheduler} for a plan, runs it through the model in one batched forward pass, and hands
 * each finished prefill's or decode's logits to its {@link Generation}. It is the only thread that
 * touches the model, the pool and the scheduler; callers talk to it through a queue.
 *
 * <p>One request never breaks the others: an exception from one sequence's KV cache (at admission
 * or inside a step) fails that request alone and frees its blocks; an exception nobody can be blamed
 * for fails the requests of that step; the loop itself goes on. If it still dies (an Error, a bug),
 * {@link #run} fails every request it held, frees their blocks and returns true so that the engine
 * runs it again on a fresh thread; requests queued meanwhile are kept for it.
 */
final class EngineLoop {

    private sealed interface Command permits Submit, Cancel, Stop {}

    private record Submit(Generation generation) implements Command {}

    private record Cancel(Generation generation) implements Command {}

    private record Stop() implements Command {}

    /** What stats report between steps, published by the engine thread. */
    record Snapshot(int running, int waiting, KvSpace.Usage usage, long cachedTokens) {}

    private final StepModel model;
    private final KvSpace pool;
    private final Scheduler scheduler;
    private final EngineCounters counters;
    /** Requests accepted but never admitted yet: what the waiting-queue bound counts. */
    private final AtomicInteger unadmitted;
    private final LinkedBlockingQueue<Command> inbox = new LinkedBlockingQueue<>();
    private final Set<Generation> live = new LinkedHashSet<>();
    private boolean accepting = true;
    private volatile Snapshot snapshot;
    private volatile EngineHealth.Status status = EngineHealth.Status.SERVING;
    private volatile long restarts;
    private volatile String lastFailure;

    EngineLoop(StepModel model, KvSpace pool, Scheduler scheduler, EngineCounters counters, AtomicInteger unadmitted) {
        this.model = model;
        this.pool = pool;
        this.scheduler = scheduler;
        this.counters = counters;
        this.unadmitted = unadmitted;
        publish();
    }

    /** Queues a new request; false once the loop has stopped accepting (closed or failed). */
    synchronized boolean submit(Generation generation) {
        if (!accepting) return false;
        inbox.add(new Submit(generation));
        return true;
    }

    void cancel(Generation generation) {
        inbox.add(new Cancel(generation));
    }

    /** Asks the loop to fail what is pending and return; callers then join the thread. */
    void stop() {
        synchronized (this) {
            accepting = false;
        }
        inbox.add(new Stop());
    }

    Snapshot snapshot() {
        return snapshot;
    }

    /** The loop's health; the engine adds CLOSED. */
    EngineHealth health() {
        return new EngineHealth(status, restarts, lastFailure);
    }

    /**
     * Runs the loop on the calling thread until it is stopped (false: everything is failed and the
     * loop is done) or dies (true: what it held is failed and freed, run it again on a fresh thread).
     */
    boolean run() {
        if (status == EngineHealth.Status.RESTARTING) status = EngineHealth.Status.SERVING;
        Throwable died = null;
        try {
            loop();
        } catch (Throwable bug) {
            died = bug;
        }
        if (died != null && recover(died)) return true;
        shutDown(died);
        return false;
    }

    /** Fails what the dead loop held and frees its blocks; false when it cannot or the engine is closing. */
    private boolean recover(Throwable cause) {
        synchronized (this) {
            if (!accepting) return false;
            status = EngineHealth.Status.RESTARTING;
        }
        lastFailure = cause.toString();
        try {
            var error = new IllegalStateException("the engine thread failed while this request was in it, and was restarted: "
                    + cause, cause);
            // Failing a request frees its blocks; requests still in the inbox wait for the next thread.
            for (Generation g : List.copyOf(live)) g.fail(error);
            forgetAll();
            restarts++;
            publish();
            return true;
        } catch (Throwable again) {
            cause.addSuppressed(again);
            return false;
        }
    }

    private void shutDown(Throwable cause) {
        synchronized (this) {
            accepting = false;
        }
        if (cause != null) {
            status = EngineHealth.Status.FAILED;
            lastFailure = cause.toString();
        }
        var error = cause == null
                ? new IllegalStateException("the engine was closed before this request finished")
                : new IllegalStateException("the engine failed: " + cause, cause);
        for (Command c; (c = inbox.poll()) != null; ) {
            if (c instanceof Submit(Generation g)) live.add(g);
        }
        for (Generation g : List.copyOf(live)) g.fail(error);
        publish();
    }

    private void loop() throws InterruptedException {
        while (true) {
            Command command = scheduler.hasWork() ? inbox.poll() : inbox.take();
            for (; command != null; command = inbox.poll()) {
                switch (command) {
                    case Stop() -> {
                        return;
                    }
                    case Submit(Generation g) -> contained(g, () -> accept(g));
                    case Cancel(Generation g) -> contained(g, () -> g.end(FinishReason.CANCELLED));
                }
            }
            if (scheduler.hasWork()) {
                try {
                    step();
                } catch (RuntimeException unattributed) {
                    failStep(unattributed);
                }
            }
            publish();
        }
    }

    /** Runs work on behalf of one request; what it throws fails that request only. */
    private static void contained(Generation g, Runnable work) {
        try {
            work.run();
        } catch (RuntimeException e) {
            g.fail(e);
        }
    }

    private void accept(Generation g) {
        live.add(g);
        if (g.request.maxTokens() == 0) {
            g.end(FinishReason.LENGTH);
        } else {
            scheduler.add(g.sequence);
        }
    }

    /**
     * A step failed outside the model and outside any one request's cache (a bug): the running
     * sequences may be half-way through it, so they fail; with none running, the head of the queue
     * was being admitted, and it fails so that the loop cannot spin on it.
     */
    private void failStep(RuntimeException cause) {
        lastFailure = cause.toString();
        var error = new IllegalStateException("the engine step this request was in failed: " + cause, cause);
        List<Sequence> victims = scheduler.runningCount() > 0 ? List.copyOf(scheduler.running())
                : scheduler.waiting().isEmpty() ? List.of() : List.of(scheduler.waiting().getFirst());
        for (Sequence seq : victims) {
            seq.generation.fail(error);
            scheduler.finish(seq);   // even if its request had ended: nothing may spin on it
        }
    }

    /** Frees whatever the scheduler still holds after every live request failed (nothing, unless a bug left it there). */
    private void forgetAll() {
        for (Sequence seq : List.copyOf(scheduler.running())) scheduler.finish(seq);
        for (Sequence seq : scheduler.waiting()) scheduler.finish(seq);
    }

    /** The error a request gets when something of its own failed it. */
    private static IllegalStateException requestFailed(Sequence seq, String where, RuntimeException cause) {
        return new IllegalStateException("request " + seq.id + " failed " + where + " (KV policy '" + seq.policy + "'): "
                + cause + "; other requests were not affected", cause);
    }

    private void step() {
        Scheduler.Plan plan = scheduler.schedule();
        for (Scheduler.Failure f : plan.failed()) f.seq().generation.fail(requestFailed(f.seq(), "to get its KV cache", f.cause()));
        counters.preemptions.add(plan.preempted().size());
        // Even alone in the pool it cannot grow: the KV budget is what limits its length.
        for (Sequence seq : plan.exhausted()) seq.generation.end(FinishReason.LENGTH);
        if (plan.isEmpty()) {
            if (scheduler.runningCount() == 0 && plan.exhausted().isEmpty() && scheduler.waitingCount() > 0) {
                // Nothing runs, yet the oldest request does not fit: the pool's bytes are held
                // elsewhere. Fail it rather than spin.
                Sequence head = scheduler.waiting().getFirst();
                head.generation.fail(new IllegalStateException("the KV pool has " + pool.freeBytes() + " of "
                        + pool.capacityBytes() + " bytes free with no sequence running; this request needs "
                        + pool.bytesFor(head.policy, head.length() + 1)));
            }
            return;
        }

        var chunks = new ArrayList<StepModel.Chunk>(plan.items().size());
        for (Scheduler.Item item : plan.items()) {
            Generation g = item.seq().generation;
            if (!g.admitted) {
                g.admitted = true;
                unadmitted.decrementAndGet();
            }
            // The chunk whose logits sample the first token after a (re)prefill ends the prompt.
            boolean endsPrompt = item.samples() && (item.seq().generatedCount() == 0 || item.count() > 1);
            chunks.add(new StepModel.Chunk(item.seq().kv(), item.tokens(), endsPrompt));
        }
        StepModel.Output output;
        try {
            output = model.step(chunks);
        } catch (KvBudgetExceededException outOfSpace) {
            // The plan's promise fell short (a format's byte count is exact only in steady state),
            // or a block came back corrupt or truncated from the SSD (BlockLostException), and the
            // step's caches are half written: recompute them later, or, if one sequence alone does
            // not fit, end it where the budget ends it. A lost block is never a reason to end one.
            if (!(outOfSpace instanceof BlockLostException) && plan.items().size() == 1 && scheduler.runningCount() == 1) {
                plan.items().getFirst().seq().generation.end(FinishReason.LENGTH);
            } else {
                var stepSequences = plan.items().stream().map(Scheduler.Item::seq).toList();
                scheduler.preempt(stepSequences);
                counters.preemptions.add(stepSequences.size());
            }
            return;
        } catch (RuntimeException stepFailed) {
            // Nobody to blame (the backend, say) and half-written caches cannot be trusted: these
            // requests fail, everyone else carries on.
            lastFailure = stepFailed.toString();
            var error = new IllegalStateException("the model step failed for its " + plan.items().size() + " requests: "
                    + stepFailed, stepFailed);
            for (Scheduler.Item item : plan.items()) item.seq().generation.fail(error);
            return;
        }
        // A sequence whose own cache failed in the step ends alone; the others' outputs are unaffected.
        boolean alone = scheduler.runningCount() == 1;
        var recompute = new ArrayList<Sequence>();
        for (int i = 0; i < plan.items().size(); i++) {
            RuntimeException fault = output.faults()[i];
            if (fault == null) continue;
            Sequence seq = plan.items().get(i).seq();
            if (fault instanceof KvBudgetExceededException) {
                // as for a whole step out of space (above), for this sequence only
                if (!(fault instanceof BlockLostException) && alone) seq.generation.end(FinishReason.LENGTH);
                else recompute.add(seq);
            } else {
                seq.generation.fail(requestFailed(seq, "in a model step", fault));
            }
        }
        scheduler.preempt(recompute);
        counters.preemptions.add(recompute.size());
        long now = System.nanoTime();
        for (int i = 0; i < plan.items().size(); i++) {
            Scheduler.Item item = plan.items().get(i);
            if (output.faults()[i] != null) continue;
            scheduler.completed(item);
            if (!item.samples()) continue;
            Generation g = item.seq().generation;
            try {
                g.accept(output.logits()[i], now, counters);
            } catch (RuntimeException pickFailed) {
                g.fail(requestFailed(item.seq(), "picking its next token", pickFailed));
            }
        }
    }

    /**
     * Takes a request out of the engine and frees its blocks now; called by the generation itself
     * just before it reports its end, so whoever sees a request finished sees its blocks freed.
     * Engine thread only; idempotent.
     */
    void release(Generation g) {
        if (!live.remove(g)) return;
        scheduler.finish(g.sequence);
        if (!g.admitted) {
            g.admitted = true;
            unadmitted.decrementAndGet();
        }
        counters.requests.increment();
        publish();
    }

    private void publish() {
        long cached = 0;
        for (Sequence seq : scheduler.running()) cached += seq.kv().length();
        snapshot = new Snapshot(scheduler.runningCount(), scheduler.waitingCount(), pool.usage(), cached);
    }
}
