package dev.kvserve.scheduler;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.concurrent.Flow;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The engine end to end over a synthetic model whose output depends on everything in each
 * sequence's cache (see {@link HashModel}) and a strict block pool: batching, preemption,
 * cancellation and stop handling must not change what a request produces, nor leak a block.
 */
@Timeout(60)
class EngineTest {

    private static final int CONTEXT = 128;

    private BlockPool pool;
    private HashModel model;
    private final List<Engine> engines = new ArrayList<>();

    @AfterEach
    void closeEngines() {
        engines.forEach(Engine::close);
    }

    private Engine engine(long budgetBytes, int maxBatch, int stepTokens, int maxWaiting) {
        pool = new BlockPool(4, budgetBytes, Map.of("fp16", 16, "q4", 4));
        model = new HashModel(CONTEXT);
        Engine engine = Engine.builder().kvPolicy("fp16").maxBatch(maxBatch).maxTokensPerStep(stepTokens).maxWaiting(maxWaiting)
                .build(new Engine.Parts(model, pool, new TinyTokenizer(), SeededPicker.FACTORY, "hash", null, null));
        engines.add(engine);
        return engine;
    }

    private static GenerationRequest greedy(String prompt, int maxTokens) {
        return GenerationRequest.builder(prompt).greedy().maxTokens(maxTokens).ignoreEos(true).build();
    }

    private static List<String> prompts(int n) {
        List<String> prompts = new ArrayList<>();
        for (int i = 0; i < n; i++) prompts.add("story " + i + ": " + "abcdefghij".substring(0, 1 + i % 10));
        return prompts;
    }

    private void assertNoBlocksHeld(Engine engine) {
        EngineStats stats = engine.stats();
        assertThat(stats.kvBlocksUsed()).isZero();
        assertThat(stats.kvBytesUsed()).isZero();
        assertThat(stats.running()).isZero();
        assertThat(stats.waiting()).isZero();
        assertThat(pool.usedBytes()).isZero();
    }

    @Test
    void greedyOutputUnderConcurrencyEqualsTheSameRequestAlone() throws Exception {
        List<String> prompts = prompts(24);
        Engine alone = engine(1 << 20, 1, 64, 100);
        List<GenerationResult> reference = new ArrayList<>();
        for (String p : prompts) reference.add(alone.generate(greedy(p, 40)));
        assertThat(reference).allMatch(r -> r.completionTokens() == 40 && r.finishReason() == FinishReason.LENGTH);

        // 64 blocks of 4 tokens: 8 admitted sequences of ~52 tokens cannot all grow, so some are preempted.
        Engine busy = engine(64 * 64, 8, 16, 100);
        var entered = new CountDownLatch(1);
        var release = new CountDownLatch(1);
        model.gate(entered, release);
        List<CompletableFuture<GenerationResult>> results = new ArrayList<>();
        results.add(busy.submit(greedy(prompts.get(0), 40), new GenerationListener() {}).result());
        entered.await();
        try (var callers = Executors.newFixedThreadPool(4)) {
            List<CompletableFuture<CompletableFuture<GenerationResult>>> submitted = new ArrayList<>();
            for (String p : prompts.subList(1, prompts.size())) {
                submitted.add(CompletableFuture.supplyAsync(() -> busy.submit(greedy(p, 40), new GenerationListener() {}).result(), callers));
            }
            for (var s : submitted) results.add(s.join());
        }
        release.countDown();
        for (int i = 0; i < prompts.size(); i++) {
            assertThat(results.get(i).join()).as(prompts.get(i)).isEqualTo(reference.get(i));
        }
        assertThat(busy.stats().preemptionsTotal()).isPositive();
        assertThat(model.maxBatchSeen.get()).isBetween(2, 8);
        assertNoBlocksHeld(busy);
    }

    @Test
    void thirtyTwoConcurrentRequestsWithSomeCancelledLeakNoBlocks() throws Exception {
        Engine engine = engine(96 * 64, 12, 32, 100);
        int n = 32;
        List<CompletableFuture<GenerationHandle>> handles = new ArrayList<>();
        List<GenerationListener> listeners = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int mode = i % 4;
            var handle = new CompletableFuture<GenerationHandle>();
            var tokens = new AtomicInteger();
            handles.add(handle);
            listeners.add(new GenerationListener() {
                @Override
                public void onToken(TokenEvent event) {
                    int count = tokens.incrementAndGet();
                    if (mode == 2 && count == 5) handle.join().cancel();
                    if (mode == 3 && count == 3) throw new IllegalStateException("listener broke");
                }
            });
        }
        // Hold the first step until every request is in and every handle known.
        var entered = new CountDownLatch(1);
        var release = new CountDownLatch(1);
        model.gate(entered, release);
        handles.getFirst().complete(engine.submit(greedy("request 0", 60), listeners.getFirst()));
        entered.await();
        try (var callers = Executors.newFixedThreadPool(4)) {
            List<CompletableFuture<Void>> submitted = new ArrayList<>();
            for (int i = 1; i < n; i++) {
                int index = i;
                submitted.add(CompletableFuture.runAsync(() -> {
                    GenerationHandle h = engine.submit(greedy("request " + index, 60), listeners.get(index));
                    handles.get(index).complete(h);
                    if (index % 4 == 1) h.cancel();
                }, callers));
            }
            submitted.forEach(CompletableFuture::join);
        }
        release.countDown();
        for (int i = 0; i < n; i++) {
            var future = handles.get(i).join().result();
            switch (i % 4) {
                case 0 -> assertThat(future.join().completionTokens()).isEqualTo(60);
                case 1 -> {
                    GenerationResult r = future.join();
                    assertThat(r.finishReason()).isEqualTo(FinishReason.CANCELLED);
                    assertThat(r.completionTokens()).as("cancelled before its first step").isZero();
                }
                case 2 -> {
                    GenerationResult r = future.join();
                    assertThat(r.finishReason()).isEqualTo(FinishReason.CANCELLED);
                    assertThat(r.completionTokens()).as("cancelled before the step after its 5th token").isEqualTo(5);
                }
                default -> assertThatThrownBy(future::join).isInstanceOf(CompletionException.class)
                        .hasRootCauseMessage("listener broke");
            }
        }
        assertNoBlocksHeld(engine);
        assertThat(pool.open).isEmpty();
        assertThat(engine.stats().requestsTotal()).isEqualTo(n);
    }

    @Test
    void queueFullWhenTheWaitingBoundIsReached() throws Exception {
        Engine engine = engine(1 << 20, 1, 16, 2);
        var entered = new CountDownLatch(1);
        var release = new CountDownLatch(1);
        model.gate(entered, release);
        var first = engine.submit(greedy("first", 5), new GenerationListener() {});
        entered.await();   // first is admitted and its step is running
        var second = engine.submit(greedy("second", 5), new GenerationListener() {});
        var third = engine.submit(greedy("third", 5), new GenerationListener() {});
        assertThatThrownBy(() -> engine.submit(greedy("fourth", 5), new GenerationListener() {}))
                .isInstanceOf(QueueFullException.class).hasMessageContaining("2 requests waiting");
        release.countDown();
        for (var h : List.of(first, second, third)) assertThat(h.result().join().completionTokens()).isEqualTo(5);
        assertThat(engine.generate(greedy("fourth", 5)).completionTokens()).isEqualTo(5);
    }

    @Test
    void stopStringsCutExactlyAndStreamedTextNeverRunsAhead() {
        Engine engine = engine(1 << 20, 4, 64, 10);
        GenerationResult full = engine.generate(greedy("tell me", 80));
        String reference = full.text();
        String stop = reference.substring(30, 33);
        int cut = reference.indexOf(stop);

        var deltas = new StringBuilder();
        var listener = new GenerationListener() {
            @Override public void onToken(TokenEvent event) {
                deltas.append(event.text());
                assertThat(reference).startsWith(deltas.toString());
                assertThat(deltas.length()).isLessThanOrEqualTo(cut);
            }
        };
        GenerationResult r = engine.submit(GenerationRequest.builder("tell me").greedy().maxTokens(80).ignoreEos(true)
                .stop(List.of("no such text", stop)).build(), listener).result().join();
        assertThat(r.finishReason()).isEqualTo(FinishReason.STOP);
        assertThat(r.text()).isEqualTo(reference.substring(0, cut));
        assertThat(deltas.toString()).isEqualTo(r.text());
        // The token that completed the stop string is the last one generated.
        int completing = 0;
        while (new TinyTokenizer().decode(java.util.Arrays.copyOf(full.tokenIds(), completing)).length() < cut + stop.length()) completing++;
        assertThat(r.tokenIds()).isEqualTo(java.util.Arrays.copyOf(full.tokenIds(), completing));
    }

    @Test
    void maxTokensIsExactAndEosEndsUnlessIgnored() {
        Engine engine = engine(1 << 20, 4, 64, 10);
        GenerationResult endsWithEos = null;
        for (int i = 0; i < 200 && endsWithEos == null; i++) {
            var r = engine.generate(GenerationRequest.builder("prompt " + i).greedy().maxTokens(100).build());
            if (r.finishReason() == FinishReason.STOP) endsWithEos = r;
            else assertThat(r.completionTokens()).isEqualTo(100);
        }
        assertThat(endsWithEos).as("some greedy continuation reaches EOS").isNotNull();
        int[] ids = endsWithEos.tokenIds();
        assertThat(ids[ids.length - 1]).isEqualTo(TinyTokenizer.EOS);
        assertThat(endsWithEos.text()).isEqualTo(new TinyTokenizer().decode(ids)).doesNotContain("</s>");

        // Same prompt ignoring EOS: the same tokens up to the EOS, then on to exactly maxTokens.
        String prompt = findPrompt(engine, endsWithEos);
        var ignoring = engine.generate(GenerationRequest.builder(prompt).greedy().maxTokens(ids.length + 7).ignoreEos(true).build());
        assertThat(ignoring.finishReason()).isEqualTo(FinishReason.LENGTH);
        assertThat(ignoring.completionTokens()).isEqualTo(ids.length + 7);
        assertThat(java.util.Arrays.copyOf(ignoring.tokenIds(), ids.length)).isEqualTo(ids);
    }

    private static String findPrompt(Engine engine, GenerationResult target) {
        for (int i = 0; i < 200; i++) {
            var r = engine.generate(GenerationRequest.builder("prompt " + i).greedy().maxTokens(100).build());
            if (r.equals(target)) return "prompt " + i;
        }
        throw new AssertionError("prompt not found again");
    }

    @Test
    void seededSamplingIsReproducibleUnderLoad() {
        Engine engine = engine(1 << 16, 6, 32, 100);
        var request = GenerationRequest.builder("once").temperature(1.5f).seed(42).maxTokens(40).ignoreEos(true).build();
        var alone = engine.generate(request);
        List<CompletableFuture<GenerationResult>> crowd = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            crowd.add(engine.submit(GenerationRequest.builder("noise " + i).temperature(1.5f).seed(i).maxTokens(30).build(),
                    new GenerationListener() {}).result());
        }
        var again = engine.submit(request, new GenerationListener() {}).result();
        crowd.forEach(CompletableFuture::join);
        assertThat(again.join()).isEqualTo(alone);
        var otherSeed = engine.generate(GenerationRequest.builder("once").temperature(1.5f).seed(43).maxTokens(40).ignoreEos(true).build());
        assertThat(otherSeed.tokenIds()).isNotEqualTo(alone.tokenIds());
        var greedy = engine.generate(greedy("once", 40));
        assertThat(alone.tokenIds()).as("temperature 1.5 samples away from the argmax").isNotEqualTo(greedy.tokenIds());
    }

    @Test
    void logprobsReportTheChosenTokenAndTheTopN() {
        Engine engine = engine(1 << 20, 4, 64, 10);
        var r = engine.generate(GenerationRequest.builder("abc").greedy().maxTokens(10).ignoreEos(true).logprobs(3).build());
        assertThat(r.logprobs()).hasSize(10);
        for (int i = 0; i < 10; i++) {
            TokenLogprob lp = r.logprobs().get(i);
            assertThat(lp.token()).isEqualTo(r.tokenIds()[i]);
            assertThat(lp.top()).hasSize(3);
            assertThat(lp.top().get(0).token()).as("greedy picks the most likely").isEqualTo(lp.token());
            assertThat(lp.top().get(0).logprob()).isGreaterThanOrEqualTo(lp.top().get(1).logprob());
            assertThat(lp.logprob()).isLessThanOrEqualTo(0f);
        }
        var chosenOnly = engine.generate(GenerationRequest.builder("abc").greedy().maxTokens(4).logprobs(-1).build());
        assertThat(chosenOnly.logprobs()).allMatch(lp -> lp.top().isEmpty());
        assertThat(engine.generate(greedy("abc", 4)).logprobs()).isEmpty();
    }

    @Test
    void streamDeliversEveryEventWithBackpressureAndCancelsOnCancel() throws Exception {
        Engine engine = engine(1 << 20, 4, 64, 10);
        var expected = engine.generate(greedy("stream", 25));

        var events = new ArrayList<TokenEvent>();
        var done = new CompletableFuture<Void>();
        engine.stream(greedy("stream", 25)).subscribe(new Flow.Subscriber<>() {
            Flow.Subscription subscription;
            @Override public void onSubscribe(Flow.Subscription s) { subscription = s; s.request(1); }
            @Override public void onNext(TokenEvent e) { events.add(e); subscription.request(1); }
            @Override public void onError(Throwable t) { done.completeExceptionally(t); }
            @Override public void onComplete() { done.complete(null); }
        });
        done.get();
        assertThat(events).hasSize(25);
        assertThat(events.getLast().result()).isEqualTo(expected);
        assertThat(events.subList(0, 24)).allMatch(e -> e.result() == null);
        assertThat(events.stream().map(TokenEvent::text).reduce("", String::concat)).isEqualTo(expected.text());

        // Cancel after three events: the generation stops and its blocks are freed.
        var cancelled = new CountDownLatch(1);
        var received = new AtomicInteger();
        engine.stream(greedy("stream", 120)).subscribe(new Flow.Subscriber<>() {
            Flow.Subscription subscription;
            @Override public void onSubscribe(Flow.Subscription s) { subscription = s; s.request(3); }
            @Override public void onNext(TokenEvent e) {
                if (received.incrementAndGet() == 3) {
                    subscription.cancel();
                    cancelled.countDown();
                }
            }
            @Override public void onError(Throwable t) {}
            @Override public void onComplete() {}
        });
        cancelled.await();
        // Requests are served in order: once this one is done, the cancelled one was released.
        engine.generate(greedy("after", 1));
        assertThat(received.get()).isEqualTo(3);
        assertNoBlocksHeld(engine);
    }

    @Test
    void closeFailsPendingRequestsAndFreesEverything() throws Exception {
        Engine engine = engine(1 << 20, 1, 16, 10);
        var entered = new CountDownLatch(1);
        var release = new CountDownLatch(1);
        model.gate(entered, release);
        var running = engine.submit(greedy("running", 100), new GenerationListener() {
            @Override public void onToken(TokenEvent event) {
                engine.close();   // from the engine thread: must not wait for itself
            }
        });
        entered.await();
        var waiting = engine.submit(greedy("waiting", 100), new GenerationListener() {});
        release.countDown();
        engine.close();
        for (var h : List.of(running, waiting)) {
            assertThatThrownBy(() -> h.result().join()).hasCauseInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("closed");
        }
        assertThat(pool.open).isEmpty();
        assertThat(pool.usedBytes()).isZero();
        assertThat(model.closed).isTrue();
        assertThatThrownBy(() -> engine.submit(greedy("late", 1), new GenerationListener() {}))
                .isInstanceOf(IllegalStateException.class).hasMessageContaining("closed");
    }

    @Test
    void badRequestsAreRejectedOnTheCallersThreadWithTheLimits() {
        Engine engine = engine(64 * 8, 4, 64, 10);   // 8 fp16 blocks: 32 tokens
        assertThatThrownBy(() -> engine.submit(greedy("x".repeat(200), 1), new GenerationListener() {}))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("201 tokens").hasMessageContaining("context is 128");
        assertThatThrownBy(() -> engine.submit(greedy("x".repeat(40), 1), new GenerationListener() {}))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("KV budget is 512 bytes");
        // The same prompt fits under a policy four times smaller.
        assertThat(engine.generate(GenerationRequest.builder("x".repeat(40)).greedy().maxTokens(2).kvPolicy("q4").build())
                .completionTokens()).isBetween(1, 2);
        assertThatThrownBy(() -> engine.submit(GenerationRequest.builder("hi").kvPolicy("int3").build(), new GenerationListener() {}))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("unknown KV policy 'int3'");
        assertThatThrownBy(() -> engine.submit(GenerationRequest.builder(new int[] {1, 5, 999}).build(), new GenerationListener() {}))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("999");
        assertThatThrownBy(() -> engine.submit(GenerationRequest.builder(new int[0]).build(), new GenerationListener() {}))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("empty");
        assertThatThrownBy(() -> engine.submit(GenerationRequest.builder("hi").temperature(-1).build(), new GenerationListener() {}))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("temperature");
        assertThatThrownBy(() -> engine.submit(GenerationRequest.builder("hi").logprobs(-2).build(), new GenerationListener() {}))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("logprobs");
    }

    @Test
    void generationStopsAtTheContextAndZeroMaxTokensReturnsAtOnce() {
        Engine engine = engine(1 << 20, 4, 64, 10);
        var nearlyFull = engine.generate(greedy("y".repeat(119), 100));   // BOS + 119 = 120 prompt tokens
        assertThat(nearlyFull.promptTokens()).isEqualTo(120);
        assertThat(nearlyFull.finishReason()).isEqualTo(FinishReason.LENGTH);
        assertThat(nearlyFull.completionTokens()).isEqualTo(CONTEXT - 120 + 1);

        var none = engine.generate(greedy("hello", 0));
        assertThat(none.finishReason()).isEqualTo(FinishReason.LENGTH);
        assertThat(none.text()).isEmpty();
        assertThat(none.promptTokens()).isEqualTo(6);
    }

    @Test
    void aOneTokenRequestDoesNotWaitForALongPrefillAndTheLongOutputIsUnchanged() throws Exception {
        // a prompt of four step budgets (BOS + 63 tokens), then a one-token prompt that wants two tokens
        GenerationRequest longRequest = greedy("abcdefgh".repeat(8).substring(1), 10);
        GenerationRequest shortRequest = GenerationRequest.builder(new int[] {TinyTokenizer.tokenOf('z')}).greedy()
                .maxTokens(2).ignoreEos(true).build();
        Engine engine = engine(1 << 20, 4, 16, 10);
        GenerationResult longAlone = engine.generate(longRequest);
        assertThat(longAlone.promptTokens()).isEqualTo(64);
        GenerationResult shortAlone = engine.generate(shortRequest);

        int before = model.steps.get();
        var entered = new CountDownLatch(1);
        var release = new CountDownLatch(1);
        model.gate(entered, release);
        var longResult = engine.submit(longRequest, new GenerationListener() {}).result();
        entered.await();   // the long prompt's first chunk (the whole budget: nobody else wants it) is in the model
        var shortDoneAtStep = new AtomicInteger();
        var shortResult = engine.submit(shortRequest, new GenerationListener() {
            @Override
            public void onComplete(GenerationResult result) {
                shortDoneAtStep.set(model.steps.get() - before);
            }
        }).result();
        release.countDown();

        assertThat(shortResult.get()).isEqualTo(shortAlone);
        assertThat(longResult.get()).isEqualTo(longAlone);
        // step 1: 16 prompt tokens; step 2: 4 more (capped) and the short prompt, sampling its first
        // token; step 3: its second. Without the cap it would be admitted after the prefill, in step 5.
        assertThat(shortDoneAtStep.get()).isEqualTo(3);
        assertNoBlocksHeld(engine);
    }

    @Test
    void aFailedStepWithNobodyToBlameFailsItsRequestsAndTheEngineServesOn() {
        Engine engine = engine(1 << 20, 4, 64, 10);
        GenerationResult reference = engine.generate(greedy("hello", 8));
        model.failNext = new IllegalStateException("backend lost its device");
        assertThatThrownBy(() -> engine.generate(greedy("hello", 8))).isInstanceOf(IllegalStateException.class)
                .hasMessageContaining("the model step failed for its 1 requests")
                .hasMessageContaining("backend lost its device");
        EngineHealth health = engine.health();
        assertThat(health.status()).isEqualTo(EngineHealth.Status.SERVING);
        assertThat(health.restarts()).isZero();
        assertThat(health.lastFailure()).contains("backend lost its device");
        assertThat(engine.generate(greedy("hello", 8))).isEqualTo(reference);
        assertNoBlocksHeld(engine);
    }

    @Test
    void statsCountTokensAndLatencies() {
        Engine engine = engine(1 << 20, 4, 64, 10);
        engine.generate(greedy("one", 10));
        engine.generate(greedy("two", 5));
        EngineStats stats = engine.stats();
        assertThat(stats.promptTokensTotal()).isEqualTo(8);
        assertThat(stats.generationTokensTotal()).isEqualTo(15);
        assertThat(stats.requestsTotal()).isEqualTo(2);
        assertThat(stats.timeToFirstToken().count()).isEqualTo(2);
        assertThat(stats.interTokenLatency().count()).isEqualTo(13);
        assertThat(stats.kvBytesCapacity()).isEqualTo(1 << 20);
        assertThat(stats.toPrometheus()).contains("kvserve_generation_tokens_total 15")
                .contains("kvserve_time_to_first_token_seconds_count 2");
    }
}
