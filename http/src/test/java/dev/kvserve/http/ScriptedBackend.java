package dev.kvserve.http;

import dev.kvserve.scheduler.EngineHealth;
import dev.kvserve.scheduler.EngineStats;
import dev.kvserve.scheduler.FinishReason;
import dev.kvserve.scheduler.GenerationListener;
import dev.kvserve.scheduler.GenerationRequest;
import dev.kvserve.scheduler.GenerationResult;
import dev.kvserve.scheduler.Histogram;
import dev.kvserve.scheduler.QueueFullException;
import dev.kvserve.scheduler.TokenEvent;
import dev.kvserve.scheduler.TokenLogprob;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A deterministic stand-in engine for testing the transport alone (framing, back-pressure,
 * cancellation, errors): byte-level tokens (id = byte, 256 = BOS, 257 = EOS), and each generation
 * writes its {@link #reply} one byte per step on one engine thread, like the real engine's thread.
 * Steps can be held with {@link #hold()} so a test can act while generations are mid-flight.
 * The end-to-end tests use the real Engine; this exists so transport edge cases are exact.
 */
final class ScriptedBackend implements ServingBackend {

    static final int BOS = 256;
    static final int EOS = 257;

    private final ModelCard card;
    private final String reply;
    private final int maxQueue;
    private final LinkedBlockingQueue<Runnable> engineTasks = new LinkedBlockingQueue<>();
    private final List<Running> running = new ArrayList<>();
    private final Semaphore steps = new Semaphore(Integer.MAX_VALUE);
    private final AtomicInteger active = new AtomicInteger();
    private final Thread engine;
    final ConcurrentLinkedQueue<GenerationRequest> submitted = new ConcurrentLinkedQueue<>();
    final ConcurrentLinkedQueue<GenerationResult> finished = new ConcurrentLinkedQueue<>();
    final AtomicInteger cancels = new AtomicInteger();
    /** Counted down whenever a generation finishes cancelled. */
    volatile CountDownLatch cancelledLatch = new CountDownLatch(1);
    /** Counted down whenever any generation finishes. */
    volatile CountDownLatch finishedLatch = new CountDownLatch(1);
    /** Counted down when a generation has emitted its first token. */
    volatile CountDownLatch firstTokenLatch = new CountDownLatch(1);
    private volatile boolean closed;
    /** What {@link #health()} reports (the real engine's health after a restart or failure). */
    volatile EngineHealth health = new EngineHealth(EngineHealth.Status.SERVING, 0, null);
    /** Size of {@link #running}, published by the engine thread under this lock for {@link #awaitRunning}. */
    private final Object runningLock = new Object();
    private int runningCount;

    ScriptedBackend(String reply, int contextLength, int maxQueue, String chatTemplate) {
        this.card = new ModelCard("scripted", 1_700_000_000L, contextLength, 258, chatTemplate, "<s>", "</s>", "fp16");
        this.reply = reply;
        this.maxQueue = maxQueue;
        this.engine = Thread.ofPlatform().name("scripted-engine").daemon().start(this::loop);
    }

    private void publishRunning() {
        synchronized (runningLock) {
            runningCount = running.size();
            runningLock.notifyAll();
        }
    }

    /**
     * Waits until the engine thread has taken at least {@code n} generations into its running set
     * (a submitted request joins it asynchronously, so steps allowed before that would pass it by).
     */
    boolean awaitRunning(int n, long timeout, TimeUnit unit) throws InterruptedException {
        long deadline = System.nanoTime() + unit.toNanos(timeout);
        synchronized (runningLock) {
            while (runningCount < n) {
                long left = deadline - System.nanoTime();
                if (left <= 0) return false;
                TimeUnit.NANOSECONDS.timedWait(runningLock, left);
            }
            return true;
        }
    }

    /** Blocks every generation step until {@link #release()}. */
    void hold() {
        steps.drainPermits();
    }

    /** Lets exactly {@code n} more steps run, then holds again. */
    void allowSteps(int n) {
        steps.drainPermits();
        steps.release(n);
    }

    void release() {
        steps.release(Integer.MAX_VALUE - steps.availablePermits());
    }

    int activeGenerations() {
        return active.get();
    }

    @Override
    public ModelCard model() {
        return card;
    }

    @Override
    public int[] tokenize(String text, boolean addBos) {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        int[] ids = new int[bytes.length + (addBos ? 1 : 0)];
        int k = 0;
        if (addBos) ids[k++] = BOS;
        for (byte b : bytes) ids[k++] = b & 0xff;
        return ids;
    }

    @Override
    public byte[] tokenBytes(int token) {
        if (token == BOS) return "<s>".getBytes(StandardCharsets.UTF_8);
        if (token == EOS) return "</s>".getBytes(StandardCharsets.UTF_8);
        return new byte[] {(byte) token};
    }

    @Override
    public String resolveKvPolicy(String spec) {
        if (!spec.equals("fp16") && !spec.matches("int[48]:group=\\d+")) {
            throw new IllegalArgumentException("unknown KV policy '" + spec + "' (known: fp16, int4:group=N, int8:group=N)");
        }
        return spec;
    }

    @Override
    public EngineHealth health() {
        return health;
    }

    @Override
    public Cancellable submit(GenerationRequest request, GenerationListener listener) {
        if (closed) throw new IllegalStateException("engine closed");
        synchronized (this) {
            if (active.get() >= maxQueue) throw new QueueFullException(maxQueue);
            active.incrementAndGet();
        }
        submitted.add(request);
        Running r = new Running(request, listener);
        engineTasks.add(() -> {
            running.add(r);
            publishRunning();
        });
        return () -> engineTasks.add(() -> r.cancelled = true);
    }

    @Override
    public EngineStats stats() {
        return new EngineStats(active.get(), 0, 3, 5, 1024, 4096, Map.of("hot", 1024L), 10, 4096, 7, 11, 2, 0,
                new Histogram(Histogram.LATENCY_SECONDS).snapshot(), new Histogram(Histogram.LATENCY_SECONDS).snapshot());
    }

    @Override
    public void close() {
        closed = true;
        engine.interrupt();
    }

    private final class Running {
        final GenerationRequest request;
        final GenerationListener listener;
        final List<Integer> tokens = new ArrayList<>();
        final StringBuilder text = new StringBuilder();
        final List<TokenLogprob> logprobs = new ArrayList<>();
        volatile boolean cancelled;

        Running(GenerationRequest request, GenerationListener listener) {
            this.request = request;
            this.listener = listener;
        }

        int promptLength() {
            return request.promptTokens().length;
        }
    }

    private void loop() {
        try {
            while (!closed) {
                Runnable task = running.isEmpty() ? engineTasks.take() : engineTasks.poll();
                if (task != null) {
                    task.run();
                    continue;
                }
                // Cancellations are honoured even while steps are held, as the real engine frees a
                // cancelled sequence before its next step.
                for (Running r : List.copyOf(running)) {
                    if (r.cancelled) end(r, FinishReason.CANCELLED, -1, "");
                }
                if (running.isEmpty()) continue;
                if (!steps.tryAcquire(10, TimeUnit.MILLISECONDS)) continue;
                for (Running r : List.copyOf(running)) step(r);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void step(Running r) {
        int n = r.tokens.size();
        boolean replyDone = n >= reply.length();
        int token = replyDone && !r.request.ignoreEos() ? EOS : reply.charAt(n % reply.length());
        r.tokens.add(token);
        TokenLogprob logprob = null;
        if (r.request.logprobs() != 0) {
            List<TokenLogprob.Candidate> top = new ArrayList<>();
            for (int i = 0; i < Math.max(0, r.request.logprobs()); i++) {
                int alt = 'a' + i;
                top.add(new TokenLogprob.Candidate(alt, String.valueOf((char) alt), -0.25f * (i + 1)));
            }
            logprob = new TokenLogprob(token, new String(tokenBytes(token), StandardCharsets.UTF_8), -0.125f, top);
            r.logprobs.add(logprob);
        }
        if (r.tokens.size() == 1) firstTokenLatch.countDown();
        if (token == EOS) {
            end(r, FinishReason.STOP, token, "", logprob);
            return;
        }
        String piece = String.valueOf((char) token);
        r.text.append(piece);
        if (r.tokens.size() >= r.request.maxTokens()) {
            end(r, FinishReason.LENGTH, token, piece, logprob);
            return;
        }
        r.listener.onToken(new TokenEvent(token, piece, logprob, null));
    }

    private void end(Running r, FinishReason reason, int token, String piece) {
        end(r, reason, token, piece, null);
    }

    private void end(Running r, FinishReason reason, int token, String piece, TokenLogprob logprob) {
        running.remove(r);
        publishRunning();
        int[] ids = r.tokens.stream().mapToInt(Integer::intValue).toArray();
        GenerationResult result = new GenerationResult(r.text.toString(), ids, reason, r.promptLength(), ids.length, r.logprobs);
        r.listener.onToken(new TokenEvent(token, piece, logprob, result));
        r.listener.onComplete(result);
        active.decrementAndGet();
        finished.add(result);
        if (reason == FinishReason.CANCELLED) {
            cancels.incrementAndGet();
            cancelledLatch.countDown();
        }
        finishedLatch.countDown();
    }

    @Override
    public String toString() {
        return "ScriptedBackend" + Arrays.asList(card.id(), reply);
    }
}
