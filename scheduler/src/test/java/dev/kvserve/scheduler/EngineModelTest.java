package dev.kvserve.scheduler;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The engine on the real shared model (stories260K) through the public builder: the real paged KV
 * cache, decoder and sampler.
 */
@Timeout(120)
class EngineModelTest {

    private static Engine engine;

    static Path shared(String first, String... more) {
        Path repo = Path.of(System.getProperty("kvserve.root", ".")).toAbsolutePath().normalize();
        for (Path p = repo; p != null; p = p.getParent()) {
            if (Files.isDirectory(p.resolveSibling("shared").resolve("models"))) return p.resolveSibling("shared").resolve(first, more);
        }
        throw new IllegalStateException("../shared (models and data) not found next to " + repo);
    }

    @BeforeAll
    static void start() {
        // Small per-step budget and pool: chunked prefill and preemption happen under load.
        engine = Engine.builder().model(shared("models", "stories260K.gguf")).backend("cpu").threads(2)
                .maxBatch(8).maxTokensPerStep(24).kvBudget(160 * 1024).build();
    }

    @AfterAll
    static void stop() {
        engine.close();
    }

    private static GenerationRequest greedy(String prompt, int maxTokens) {
        return GenerationRequest.builder(prompt).greedy().maxTokens(maxTokens).ignoreEos(true).build();
    }

    @Test
    void greedyOutputMatchesLlamaCpp() throws IOException {
        List<Integer> expected = new ArrayList<>();
        for (String line : Files.readAllLines(shared("models", "reference", "greedy.stories260K.txt"))) {
            if (!line.startsWith("step")) continue;
            String first = line.substring(line.indexOf("top10: ") + 7);
            expected.add(Integer.parseInt(first.substring(0, first.indexOf(':'))));
        }
        var result = engine.generate(greedy("Once upon a time", expected.size()));
        assertThat(result.promptTokens()).isEqualTo(5);
        assertThat(result.tokenIds()).containsExactly(expected.stream().mapToInt(Integer::intValue).toArray());
        assertThat(result.text()).startsWith(", there was a little girl named Lily.");
    }

    @Test
    void greedyOutputUnderConcurrencyEqualsTheSameRequestAlone() {
        List<String> prompts = new ArrayList<>();
        String[] starts = {"Once upon a time", "The cat", "Tom and Sue went", "One day, a little bird", "The sun was"};
        for (int i = 0; i < 16; i++) prompts.add(starts[i % starts.length] + (i >= starts.length ? " " + "big red dog".substring(0, i % 8 + 3) : ""));
        List<GenerationResult> alone = new ArrayList<>();
        for (String p : prompts) alone.add(engine.generate(greedy(p, 48)));

        long preemptionsBefore = engine.stats().preemptionsTotal();
        List<CompletableFuture<GenerationResult>> together = new ArrayList<>();
        try (var callers = Executors.newFixedThreadPool(4)) {
            List<CompletableFuture<CompletableFuture<GenerationResult>>> submitted = new ArrayList<>();
            for (String p : prompts) {
                submitted.add(CompletableFuture.supplyAsync(() -> engine.submit(greedy(p, 48), new GenerationListener() {}).result(), callers));
            }
            for (var s : submitted) together.add(s.join());
        }
        for (int i = 0; i < prompts.size(); i++) {
            assertThat(together.get(i).join().tokenIds()).as(prompts.get(i)).isEqualTo(alone.get(i).tokenIds());
            assertThat(together.get(i).join().text()).isEqualTo(alone.get(i).text());
        }
        assertThat(engine.stats().preemptionsTotal()).as("the pool is too small for 8 sequences of 60 tokens").isGreaterThan(preemptionsBefore);
        assertThat(engine.stats().kvBlocksUsed()).isZero();
    }

    @Test
    void thirtyTwoConcurrentRequestsWithSomeCancelledLeakNoBlocks() {
        int n = 32;
        List<CompletableFuture<GenerationHandle>> handles = new ArrayList<>();
        try (var callers = Executors.newFixedThreadPool(4)) {
            for (int i = 0; i < n; i++) {
                int index = i;
                var handle = new CompletableFuture<GenerationHandle>();
                handles.add(handle);
                var tokens = new AtomicInteger();
                var listener = new GenerationListener() {
                    @Override public void onToken(TokenEvent event) {
                        if (index % 4 == 2 && tokens.incrementAndGet() == 3) handle.join().cancel();
                    }
                };
                callers.execute(() -> {
                    var request = GenerationRequest.builder("Once upon a time " + "abcdefgh".substring(0, index % 8))
                            .temperature(0.8f).seed(index).maxTokens(40).kvPolicy(index % 3 == 0 ? "int4" : null).build();
                    GenerationHandle h = engine.submit(request, listener);
                    handle.complete(h);
                    if (index % 4 == 1) h.cancel();
                });
            }
        }
        int cancelled = 0;
        for (int i = 0; i < n; i++) {
            GenerationResult r = handles.get(i).join().result().join();
            if (r.finishReason() == FinishReason.CANCELLED) cancelled++;
            if (i % 4 == 2) assertThat(r.finishReason()).isEqualTo(FinishReason.CANCELLED);
            assertThat(r.completionTokens()).isLessThanOrEqualTo(40);
        }
        assertThat(cancelled).isGreaterThanOrEqualTo(8);
        EngineStats stats = engine.stats();
        assertThat(stats.kvBlocksUsed()).isZero();
        assertThat(stats.kvBytesUsed()).isZero();
        assertThat(stats.running()).isZero();
        assertThat(stats.waiting()).isZero();
    }

    @Test
    void seededSamplingIsReproducible() {
        var request = GenerationRequest.builder("The little dog").temperature(0.9f).topP(0.95f).seed(1234).maxTokens(40).ignoreEos(true).build();
        var first = engine.generate(request);
        List<CompletableFuture<GenerationResult>> load = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            load.add(engine.submit(GenerationRequest.builder("Noise " + i).temperature(1f).seed(i).maxTokens(30).build(),
                    new GenerationListener() {}).result());
        }
        var second = engine.submit(request, new GenerationListener() {}).result();
        load.forEach(CompletableFuture::join);
        assertThat(second.join()).isEqualTo(first);
        var otherSeed = engine.generate(GenerationRequest.builder("The little dog").temperature(0.9f).topP(0.95f).seed(99).maxTokens(40).ignoreEos(true).build());
        assertThat(otherSeed.tokenIds()).isNotEqualTo(first.tokenIds());
    }

    @Test
    void compressedAndEvictingPoliciesServeAndFreeEverything() {
        var int4 = engine.generate(GenerationRequest.builder("Once upon a time").greedy().maxTokens(20).kvPolicy("int4").build());
        assertThat(int4.completionTokens()).isEqualTo(20);
        // A sink window bounds the cache: 120 tokens run in a window of 32 plus 4 sinks.
        String window = engine.canonicalKvPolicy("fp16+sink:sinks=4,window=32");
        var evicting = engine.generate(GenerationRequest.builder("Once upon a time").greedy().maxTokens(120).ignoreEos(true)
                .kvPolicy(window).build());
        assertThat(evicting.completionTokens()).isEqualTo(120);
        assertThat(evicting.finishReason()).isEqualTo(FinishReason.LENGTH);
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> engine.canonicalKvPolicy("int4:group=3"))
                .isInstanceOf(IllegalArgumentException.class);
        assertThat(engine.stats().kvBlocksUsed()).isZero();
    }

    @Test
    void logprobsComeFromTheModel() {
        var r = engine.generate(GenerationRequest.builder("Once upon a time").greedy().maxTokens(3).logprobs(5).build());
        TokenLogprob first = r.logprobs().getFirst();
        assertThat(first.token()).isEqualTo(432);
        assertThat(first.text()).isEqualTo(",");
        assertThat(first.top()).hasSize(5);
        assertThat(first.top().get(1).token()).isEqualTo(383);   // ' there', second in llama.cpp's top 10
        // 17.80 vs 14.28 in the logits: the log-probability gap is the logit gap.
        assertThat(first.top().get(0).logprob() - first.top().get(1).logprob()).isCloseTo(3.5155f, org.assertj.core.data.Offset.offset(5e-3f));
    }
}
