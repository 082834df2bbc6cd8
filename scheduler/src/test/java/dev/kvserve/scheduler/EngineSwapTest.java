package dev.kvserve.scheduler;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.Backends;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.SequenceKv;
import dev.kvserve.runtime.model.LlamaModel;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Preemption by swap on stories260K with an offload tier: a pool too small for the batch makes the
 * scheduler move the latest arrivals' blocks to host RAM / SSD and back; greedy outputs must equal
 * each request run alone, a corrupt SSD copy must fall back to recompute, and nothing may be left in
 * the pool or on disk afterwards.
 */
@Timeout(120)
class EngineSwapTest {

    @TempDir
    Path ssdDir;

    /** Counts swaps through the real pool. */
    static final class CountingSpace implements KvSpace {
        final PagedKvSpace inner;
        final AtomicInteger swapOuts = new AtomicInteger();
        final AtomicInteger swapIns = new AtomicInteger();

        CountingSpace(PagedKvSpace inner) { this.inner = inner; }

        @Override public String canonical(String policy) { return inner.canonical(policy); }
        @Override public long bytesFor(String policy, int tokens) { return inner.bytesFor(policy, tokens); }
        @Override public long capacityBytes() { return inner.capacityBytes(); }
        @Override public long freeBytes() { return inner.freeBytes(); }
        @Override public SequenceKv open(String policy) { return inner.open(policy); }
        @Override public boolean reserve(SequenceKv kv, int tokens) { return inner.reserve(kv, tokens); }
        @Override public boolean reserveSpilling(SequenceKv kv, int tokens) { return inner.reserveSpilling(kv, tokens); }
        @Override public void settle() { inner.settle(); }
        @Override public SequenceKv fork(SequenceKv parent, int tokens) { return inner.fork(parent, tokens); }
        @Override public boolean canFork(String policy) { return inner.canFork(policy); }
        @Override public boolean canSwap(String policy) { return inner.canSwap(policy); }
        @Override public long swapInBytes(SequenceKv kv) { return inner.swapInBytes(kv); }
        @Override public long admissionBytes(String policy, int tokens, int chunk) { return inner.admissionBytes(policy, tokens, chunk); }
        @Override public Usage usage() { return inner.usage(); }
        @Override public void close() { inner.close(); }

        @Override
        public boolean swapOut(SequenceKv kv) {
            boolean done = inner.swapOut(kv);
            if (done) swapOuts.incrementAndGet();
            return done;
        }

        @Override
        public void swapIn(SequenceKv kv) {
            swapIns.incrementAndGet();
            inner.swapIn(kv);
        }
    }

    private record Run(Engine engine, KvCacheManager manager, CountingSpace space) {}

    private static Run start(String policy, Preemption preemption, long kvBudget) {
        Backend compute = Backends.select("cpu", 2);
        LlamaModel llama = LlamaModel.load(EngineModelTest.shared("models", "stories260K.gguf"), compute, 2);
        var manager = new KvCacheManager(llama.kvGeometry(), kvBudget);
        var space = new CountingSpace(new PagedKvSpace(manager));
        var parts = new Engine.Parts(new LlamaStepModel(llama, compute), space, llama.tokenizer(),
                SamplerPicker.factory(llama.tokenizer()), llama.name(), llama.chatTemplate(), null);
        Engine engine = new Engine(parts, policy, preemption, 8, 24, 64);
        return new Run(engine, manager, space);
    }

    private static final String[] PROMPTS = {"Once upon a time", "The cat", "Tom and Sue went", "One day, a little bird",
            "The sun was", "Lily had a red ball", "A big dog", "Ben liked to"};

    private static GenerationRequest greedy(String prompt) {
        return GenerationRequest.builder(prompt).greedy().maxTokens(48).ignoreEos(true).build();
    }

    private static List<List<Integer>> together(Engine engine, GenerationListener listener) {
        List<CompletableFuture<GenerationResult>> futures = new ArrayList<>();
        for (String p : PROMPTS) futures.add(engine.submit(greedy(p), listener).result());
        List<List<Integer>> out = new ArrayList<>();
        for (var f : futures) out.add(ids(f.join()));
        return out;
    }

    private static List<Integer> ids(GenerationResult r) {
        List<Integer> out = new ArrayList<>();
        for (int t : r.tokenIds()) out.add(t);
        return out;
    }

    // fp32 stories260K: 1280 B per token; a 60-token sequence holds 80 KiB, so the 160 KiB pool runs
    // about two of the eight at once.
    private static final long POOL = 160 * 1024;

    @ParameterizedTest
    @ValueSource(strings = {"fp32+offload:host=4MiB", "fp32+offload:host=0,ssd=DIR", "fp16+offload:host=16KiB,ssd=DIR"})
    void swapPreemptionResumesWithTheGreedyOutputOfEachRequestAlone(String spec) throws IOException {
        String policy = spec.replace("DIR", ssdDir.toString());
        List<List<Integer>> alone = new ArrayList<>();
        Run run = start(policy, Preemption.SWAP, POOL);
        try (Engine engine = run.engine()) {
            for (String p : PROMPTS) alone.add(ids(engine.generate(greedy(p))));
            assertThat(run.space().swapOuts).as("alone, nothing is preempted").hasValue(0);

            List<List<Integer>> batched = together(engine, new GenerationListener() {});
            assertThat(batched).isEqualTo(alone);
            assertThat(run.space().swapOuts.get()).as("the pool holds about two of eight sequences").isPositive();
            assertThat(run.space().swapIns.get()).isPositive();
            assertThat(run.manager().tierStats().lostBlocks()).isZero();
            assertThat(engine.stats().kvBlocksUsed()).isZero();
            assertThat(run.manager().stats().bytesUsed()).isZero();
            assertThat(run.manager().tierStats().hostBytes()).isZero();
            assertThat(run.manager().tierStats().ssdBytes()).isZero();
        }
        try (var files = Files.list(ssdDir)) {
            assertThat(files.toList()).as("SSD files deleted when the engine closes").isEmpty();
        }
    }

    @Test
    void recomputePreemptionIsStillAvailableAndGivesTheSameOutputs() {
        Run run = start("fp32+offload:host=4MiB", Preemption.RECOMPUTE, POOL);
        try (Engine engine = run.engine()) {
            List<List<Integer>> alone = new ArrayList<>();
            for (String p : PROMPTS) alone.add(ids(engine.generate(greedy(p))));
            assertThat(together(engine, new GenerationListener() {})).isEqualTo(alone);
            assertThat(engine.stats().preemptionsTotal()).isPositive();
            assertThat(run.space().swapOuts).as("preempted sequences are recomputed, never swapped").hasValue(0);
            assertThat(run.space().swapIns).hasValue(0);
        }
    }

    @Test
    void aCorruptSsdCopyFallsBackToRecomputeWithoutHurtingAnyone() throws IOException {
        String policy = "fp32+offload:host=0,ssd=" + ssdDir + ",prefetch=false";
        Run run = start(policy, Preemption.SWAP, POOL);
        try (Engine engine = run.engine()) {
            List<List<Integer>> alone = new ArrayList<>();
            for (String p : PROMPTS) alone.add(ids(engine.generate(greedy(p))));

            // On the engine thread, between steps: once blocks of a swapped-out sequence lie on the SSD,
            // flip every byte of the file they are in.
            var damaged = new AtomicBoolean();
            GenerationListener vandal = new GenerationListener() {
                @Override
                public void onToken(TokenEvent event) {
                    if (damaged.get() || run.space().swapOuts.get() == 0 || run.manager().tierStats().ssdBytes() == 0) return;
                    damaged.set(true);
                    flipAll(ssdDir);
                }
            };
            List<List<Integer>> batched = together(engine, vandal);
            assertThat(damaged).isTrue();
            assertThat(run.manager().tierStats().lostBlocks()).as("the corrupt copies were detected").isPositive();
            assertThat(batched).as("lost blocks were recomputed, never used").isEqualTo(alone);
            assertThat(engine.stats().kvBlocksUsed()).isZero();
            assertThat(run.manager().tierStats().ssdBytes()).isZero();
        }
        try (var files = Files.list(ssdDir)) {
            assertThat(files.toList()).isEmpty();
        }
    }

    private static void flipAll(Path dir) {
        try (var files = Files.list(dir)) {
            for (Path f : files.toList()) {
                try (var raf = new RandomAccessFile(f.toFile(), "rw")) {
                    byte[] all = new byte[(int) raf.length()];
                    raf.readFully(all);
                    for (int i = 0; i < all.length; i++) all[i] ^= 0x5a;
                    raf.seek(0);
                    raf.write(all);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
