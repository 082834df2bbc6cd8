package dev.kvserve.scheduler;

import java.util.Objects;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Executor;
import java.util.concurrent.Flow;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Bridges a generation's listener callbacks (engine thread) to one {@link Flow.Subscriber}, with
 * backpressure: events are buffered (a generation has at most maxTokens + 1 of them) and delivered
 * on {@code delivery} as the subscriber requests them, so a slow subscriber never stalls the
 * engine. The generation starts when the stream is created; events before the subscription are
 * kept. Cancelling the subscription cancels the generation. One subscriber only.
 */
final class TokenStream implements Flow.Publisher<TokenEvent>, GenerationListener {

    private final Executor delivery;
    private final Queue<TokenEvent> events = new ConcurrentLinkedQueue<>();
    private final AtomicReference<Flow.Subscriber<? super TokenEvent>> subscriber = new AtomicReference<>();
    private final AtomicLong demand = new AtomicLong();
    private final AtomicInteger drainRequests = new AtomicInteger();
    private volatile boolean completed;
    private volatile Throwable error;
    private volatile boolean cancelled;
    private boolean terminated;
    private volatile GenerationHandle handle;

    TokenStream(Executor delivery) {
        this.delivery = delivery;
    }

    void attach(GenerationHandle handle) {
        this.handle = handle;
        if (cancelled) handle.cancel();
    }

    @Override
    public void subscribe(Flow.Subscriber<? super TokenEvent> s) {
        Objects.requireNonNull(s, "subscriber");
        if (!subscriber.compareAndSet(null, s)) {
            s.onSubscribe(new Flow.Subscription() {
                @Override public void request(long n) {}
                @Override public void cancel() {}
            });
            s.onError(new IllegalStateException("a generation stream allows one subscriber only"));
            return;
        }
        s.onSubscribe(new Flow.Subscription() {
            @Override
            public void request(long n) {
                if (n <= 0) {
                    error = new IllegalArgumentException("request(" + n + "): demand must be positive (Reactive Streams §3.9)");
                    cancelGeneration();
                } else {
                    demand.getAndAccumulate(n, (a, b) -> a + b < 0 ? Long.MAX_VALUE : a + b);
                }
                drain();
            }

            @Override
            public void cancel() {
                cancelGeneration();
            }
        });
        drain();
    }

    private void cancelGeneration() {
        cancelled = true;
        GenerationHandle h = handle;
        if (h != null) h.cancel();
    }

    @Override
    public void onToken(TokenEvent event) {
        events.add(event);
        drain();
    }

    @Override
    public void onComplete(GenerationResult result) {
        completed = true;
        drain();
    }

    @Override
    public void onError(Throwable failure) {
        error = failure;
        drain();
    }

    private void drain() {
        if (subscriber.get() == null) return;
        if (drainRequests.getAndIncrement() == 0) delivery.execute(this::drainLoop);
    }

    /** Runs on one delivery thread at a time (the drainRequests counter admits a single runner). */
    private void drainLoop() {
        var s = subscriber.get();
        int missed = 1;
        do {
            if (!terminated) {
                if (error != null) {
                    terminated = true;
                    events.clear();
                    s.onError(error);
                } else if (cancelled) {
                    terminated = true;
                    events.clear();
                } else {
                    while (demand.get() > 0 && !cancelled) {
                        TokenEvent next = events.poll();
                        if (next == null) break;
                        demand.decrementAndGet();
                        try {
                            s.onNext(next);
                        } catch (Throwable misbehaved) {
                            // §2.13: a throwing subscriber is treated as cancelled.
                            cancelGeneration();
                        }
                    }
                    if (completed && events.isEmpty() && !cancelled) {
                        terminated = true;
                        s.onComplete();
                    }
                }
            }
            missed = drainRequests.addAndGet(-missed);
        } while (missed != 0);
    }
}
