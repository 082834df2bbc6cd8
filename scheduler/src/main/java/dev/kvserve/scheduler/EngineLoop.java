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
 */
final class EngineLoop implements Runnable {

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
    private volatile Throwable failure;

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

    /** Why the loop died, or null. */
    Throwable failure() {
        return failure;
    }

    @Override
    public void run() {
        Throwable cause = null;
        try {
            loop();
        } catch (Throwable bug) {
            cause = bug;
            failure = bug;
        } finally {
            synchronized (this) {
                accepting = false;
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
    }

    private void loop() throws InterruptedException {
        while (true) {
            Command command = scheduler.hasWork() ? inbox.poll() : inbox.take();
            for (; command != null; command = inbox.poll()) {
                switch (command) {
                    case Stop() -> {
                        return;
                    }
                    case Submit(Generation g) -> accept(g);
                    case Cancel(Generation g) -> g.end(FinishReason.CANCELLED);
                }
            }
            if (scheduler.hasWork()) step();
            publish();
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

    private void step() {
        Scheduler.Plan plan = scheduler.schedule();
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
        float[][] logits;
        try {
            logits = model.forward(chunks);
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
            // Half-written caches cannot be trusted: these requests fail, everyone else carries on.
            for (Scheduler.Item item : plan.items()) item.seq().generation.fail(stepFailed);
            return;
        }
        scheduler.completed(plan);
        long now = System.nanoTime();
        for (int i = 0; i < plan.items().size(); i++) {
            Scheduler.Item item = plan.items().get(i);
            if (!item.samples()) continue;
            item.seq().generation.accept(logits[i], now, counters);
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
