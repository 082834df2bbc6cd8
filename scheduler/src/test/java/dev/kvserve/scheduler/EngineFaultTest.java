package dev.kvserve.scheduler;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.QueryRows;
import dev.kvserve.kvcache.evict.EvictionPolicy;
import dev.kvserve.kvcache.evict.EvictionState;
import dev.kvserve.kvcache.policy.ComponentKind;
import dev.kvserve.kvcache.policy.MethodDef;
import dev.kvserve.kvcache.policy.ParamSpec;
import dev.kvserve.kvcache.policy.Params;
import dev.kvserve.kvcache.policy.PolicyRegistry;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CountDownLatch;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Fault injection on the real decoder and paged cache (the embedded stories260K): a KV policy part
 * registered here throws for the sequences that use it, at a chosen layer and position, or when
 * their cache opens. One request's fault must fail that request alone, leave the others' greedy
 * tokens exactly as without it, free every block, and leave the engine serving; an Error that kills
 * the engine thread must get it restarted.
 */
@Timeout(120)
class EngineFaultTest {

    private static final List<String> PROMPTS = List.of("Once upon a time", "The little dog", "Lily and her mom", "One day, a bird");

    static {
        if (PolicyRegistry.all().stream().noneMatch(d -> d.name().equals("testfault"))) {
            PolicyRegistry.register(new MethodDef("testfault", ComponentKind.EVICTION,
                    "keeps everything; throws at a layer and position, or when a cache opens (test)",
                    List.of(ParamSpec.ofInt("layer", 0, 0, 1 << 10), ParamSpec.ofInt("at", -1, -1, 1 << 20),
                            ParamSpec.ofBoolean("error", false), ParamSpec.ofBoolean("open", false)),
                    FaultyEviction::new));
        }
    }

    /** Keeps every token; throws before attention of {@code layer} in the step holding position {@code at}. */
    record FaultyEviction(Params params) implements EvictionPolicy {
        @Override
        public EvictionState open(KvGeometry geometry, int blockTokens) {
            // Only on the engine thread: the check at submission passes, and the cache then cannot be
            // opened at admission (as when a resource the policy needs vanished in between).
            if (params.getBoolean("open") && Thread.currentThread().getName().startsWith("kvserve-engine")) {
                throw new IllegalArgumentException("injected fault: testfault cannot open a cache");
            }
            int layer = params.getInt("layer"), at = params.getInt("at");
            boolean error = params.getBoolean("error");
            return new EvictionState() {
                @Override
                public void beforeAttention(LayerKv kv, QueryRows queries) {
                    if (kv.layer() != layer || at < queries.firstPosition() || at >= queries.firstPosition() + queries.rows()) return;
                    String what = "injected fault at layer " + layer + ", position " + at;
                    if (error) throw new AssertionError(what);
                    throw new IllegalStateException(what);
                }

                @Override
                public EvictionState fork() {
                    return this;
                }
            };
        }

        @Override
        public int maxRetainedTokens(int layer, int tokens, int stepTokens) {
            return tokens + stepTokens;
        }
    }

    private Engine engine;

    @BeforeEach
    void start() {
        engine = Engine.builder().defaultModel().backend("cpu").threads(2).maxBatch(8).maxTokensPerStep(64).build();
    }

    @AfterEach
    void stop() {
        engine.close();
    }

    private static GenerationRequest greedy(String prompt, String policy) {
        return GenerationRequest.builder(prompt).greedy().maxTokens(20).ignoreEos(true).kvPolicy(policy).build();
    }

    private int promptLength(String prompt) {
        return engine.tokenizer().encode(prompt).length;
    }

    /** Greedy tokens of the prompts run together, with nothing faulty beside them. */
    private List<int[]> reference(List<String> prompts) {
        List<CompletableFuture<GenerationResult>> results = new ArrayList<>();
        for (String p : prompts) results.add(engine.submit(greedy(p, "fp16"), new GenerationListener() {}).result());
        return results.stream().map(r -> r.join().tokenIds()).toList();
    }

    /**
     * Submits {@code first}, then, while the engine thread is held in its first token's callback,
     * the rest: from the next step on they all run in the same batches.
     */
    private List<CompletableFuture<GenerationResult>> submitTogether(GenerationRequest first, List<GenerationRequest> rest) {
        var othersIn = new CountDownLatch(1);
        var held = new CountDownLatch(1);
        List<CompletableFuture<GenerationResult>> results = new ArrayList<>();
        results.add(engine.submit(first, new GenerationListener() {
            @Override
            public void onToken(TokenEvent event) {
                if (held.getCount() == 0) return;
                held.countDown();
                try {
                    othersIn.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        }).result());
        try {
            held.await();
        } catch (InterruptedException e) {
            throw new AssertionError(e);
        }
        try {
            for (GenerationRequest r : rest) results.add(engine.submit(r, new GenerationListener() {}).result());
        } finally {
            othersIn.countDown();   // a submission that throws must not leave the engine thread held
        }
        return results;
    }

    private void assertEverythingFreedAndServing() {
        EngineStats stats = engine.stats();
        assertThat(stats.kvBytesUsed()).isZero();
        assertThat(stats.kvBlocksUsed()).isZero();
        assertThat(stats.running()).isZero();
        assertThat(stats.waiting()).isZero();
        assertThat(engine.health().status()).isEqualTo(EngineHealth.Status.SERVING);
    }

    @Test
    void aFaultInOneSequenceOfABatchedStepFailsThatRequestAloneAndTheOthersAreUnchanged() {
        List<String> good = PROMPTS.subList(0, 3);
        List<int[]> expected = reference(good);

        String faulty = PROMPTS.get(3);
        // in its third decode step, at a middle layer: the others are decoding in the same batch
        String policy = "fp16+testfault:layer=2,at=" + (promptLength(faulty) + 2);
        List<CompletableFuture<GenerationResult>> results = submitTogether(greedy(good.get(0), "fp16"),
                List.of(greedy(good.get(1), "fp16"), greedy(faulty, policy), greedy(good.get(2), "fp16")));

        assertThatThrownBy(() -> results.get(2).join()).isInstanceOf(CompletionException.class)
                .cause().isInstanceOf(IllegalStateException.class)
                .hasMessageContaining("failed in a model step")
                .hasMessageContaining("injected fault at layer 2")
                .hasMessageContaining("testfault");
        assertThat(results.get(0).join().tokenIds()).containsExactly(expected.get(0));
        assertThat(results.get(1).join().tokenIds()).containsExactly(expected.get(1));
        assertThat(results.get(3).join().tokenIds()).containsExactly(expected.get(2));
        assertEverythingFreedAndServing();
        assertThat(engine.health().lastFailure()).as("a request's own fault is not the engine's").isNull();

        // and the engine goes on serving
        assertThat(engine.generate(greedy(good.get(1), "fp16")).tokenIds()).containsExactly(expected.get(1));
        assertEverythingFreedAndServing();
    }

    @Test
    void aPolicyThatCannotOpenItsCacheFailsOnlyThatRequest() {
        List<int[]> expected = reference(PROMPTS.subList(0, 2));
        // A built-in eviction rule skipping a layer this 5-layer model lacks is refused at submission.
        assertThatThrownBy(() -> engine.submit(greedy(PROMPTS.get(3), "fp16+l2:skip=40"), new GenerationListener() {}))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("layer 40 does not exist");
        // One that passes that check and still cannot open its cache in the engine fails alone.
        List<CompletableFuture<GenerationResult>> results = submitTogether(greedy(PROMPTS.get(0), "fp16"),
                List.of(greedy(PROMPTS.get(2), "fp16+testfault:open=true"), greedy(PROMPTS.get(1), "fp16")));

        assertThatThrownBy(() -> results.get(1).join()).isInstanceOf(CompletionException.class)
                .cause().isInstanceOf(IllegalStateException.class)
                .hasMessageContaining("failed to get its KV cache")
                .hasMessageContaining("injected fault: testfault cannot open a cache");
        assertThat(results.get(0).join().tokenIds()).containsExactly(expected.get(0));
        assertThat(results.get(2).join().tokenIds()).containsExactly(expected.get(1));
        assertEverythingFreedAndServing();
        assertThat(engine.generate(greedy(PROMPTS.get(0), "fp16")).tokenIds()).containsExactly(expected.get(0));
    }

    @Test
    void anErrorThatKillsTheEngineThreadFailsWhatItRanAndAFreshThreadServesTheNextRequest() {
        int[] expected = reference(List.of(PROMPTS.get(0))).getFirst();
        String faulty = PROMPTS.get(3);
        String policy = "fp16+testfault:layer=1,error=true,at=" + promptLength(faulty);
        List<CompletableFuture<GenerationResult>> results = submitTogether(greedy(PROMPTS.get(0), "fp16"),
                List.of(greedy(faulty, policy)));

        // both were in the engine when its thread died: both fail, saying so
        for (var result : results) {
            assertThatThrownBy(result::join).isInstanceOf(CompletionException.class)
                    .cause().isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("engine thread failed")
                    .hasMessageContaining("restarted")
                    .hasRootCauseInstanceOf(AssertionError.class);
        }
        // a request submitted now runs on the fresh thread, exactly as before
        assertThat(engine.generate(greedy(PROMPTS.get(0), "fp16")).tokenIds()).containsExactly(expected);
        assertEverythingFreedAndServing();
        EngineHealth health = engine.health();
        assertThat(health.restarts()).isEqualTo(1);
        assertThat(health.lastFailure()).contains("AssertionError").contains("injected fault at layer 1");

        engine.close();
        assertThat(engine.health().status()).isEqualTo(EngineHealth.Status.CLOSED);
        assertThatThrownBy(() -> engine.submit(greedy(PROMPTS.get(0), "fp16"), new GenerationListener() {}))
                .isInstanceOf(IllegalStateException.class).hasMessageContaining("closed");
    }
}
