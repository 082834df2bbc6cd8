package dev.kvserve.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.cpu.CpuBackend;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.runtime.eval.Perplexity;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.model.SequenceChunk;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

class KvEvalTest {

    static Backend backend;
    static LlamaModel model;
    static KvCacheManager kvm;
    static int[] tokens;

    @BeforeAll
    static void load() throws Exception {
        backend = new CpuBackend(1);
        model = LlamaModel.load(Shared.stories260K(), backend, 1);
        kvm = new KvCacheManager(model.kvGeometry(), 1L << 30);
        String text = Files.readString(Shared.tinyStoriesText()).substring(0, 4000);
        tokens = model.tokenizer().encode(text, true, false);
    }

    @AfterAll
    static void close() {
        kvm.close();
        model.close();
        backend.close();
    }

    /** Mean NLL of every window computed directly: one forward over the window with all logits. */
    private static double directMeanNll(int ctx, int n) {
        Perplexity.Accumulator acc = new Perplexity.Accumulator();
        int vocab = model.config().vocabSize();
        for (int first = 0; first + 1 < n; first += ctx) {
            int len = Math.min(ctx, n - first);
            int[] w = Arrays.copyOfRange(tokens, first, first + len);
            w[0] = model.tokenizer().bos();
            try (PagedSequence seq = kvm.open(KvCachePolicy.parse("fp32"))) {
                float[] logits = model.forward(List.of(new SequenceChunk(seq, Arrays.copyOf(w, len - 1), true)))[0];
                for (int j = 0; j < len - 1; j++) acc.add(Perplexity.negativeLogLikelihood(logits, j * vocab, vocab, w[j + 1]));
            }
        }
        return acc.result(1).meanNll();
    }

    @Test
    void fp32DecodePathMatchesDirectComputation() {
        int ctx = 96, n = 230; // three windows, the last one short
        double direct = directMeanNll(ctx, n);
        KvEval.Result decode = KvEval.run(model, kvm, KvCachePolicy.parse("fp32"), tokens, new KvEval.Options(ctx, 0, n), null);
        KvEval.Result prefilled = KvEval.run(model, kvm, KvCachePolicy.parse("fp32"), tokens, new KvEval.Options(ctx, 40, n), null);
        assertThat(decode.windows()).isEqualTo(3);
        assertThat(decode.tokens()).isEqualTo(n);
        assertThat(decode.predictions()).isEqualTo(n - 3);
        assertThat(decode.meanNll()).isCloseTo(direct, within(1e-5));
        assertThat(prefilled.meanNll()).isCloseTo(direct, within(1e-5));
        assertThat(decode.ppl()).isCloseTo(Math.exp(direct), within(1e-4));
        // a real model on in-distribution text: far better than uniform over 512 tokens
        assertThat(decode.ppl()).isBetween(1.5, 20.0);
        assertThat(kvm.stats().sequences()).isZero();
    }

    @Test
    void fp16BytesPerTokenAreTheGeometrys() {
        KvGeometry g = model.kvGeometry();
        long expected = 2L * 2 * g.layers() * g.kvHeads() * g.headDim();
        assertThat(expected).isEqualTo(640); // stories260K: 5 layers, 4 KV heads of 8
        // ctx 129: 128 tokens are fed, a whole number of 16-token blocks
        KvEval.Result r = KvEval.run(model, kvm, KvCachePolicy.parse("fp16"), tokens, new KvEval.Options(129, 0, 129), null);
        assertThat(r.bytesPerTokenEnd()).isEqualTo((double) expected);
        assertThat(r.ratioEnd()).isEqualTo(1.0);
        assertThat(r.ratio()).isEqualTo(1.0);
        // partly filled blocks make the average a little higher than the end
        assertThat(r.bytesPerToken()).isGreaterThan(expected).isLessThan(expected * 1.5);
        assertThat(r.fp16BytesPerToken()).isEqualTo(r.bytesPerToken());
        assertThat(r.peakBytes()).isEqualTo(expected * 128);
    }

    @Test
    void poolAccountingAgreesWithTheSequence() {
        try (PagedSequence seq = kvm.open(KvCachePolicy.parse("int8"))) {
            model.forward(List.of(new SequenceChunk(seq, Arrays.copyOf(tokens, 40), false)));
            assertThat(kvm.stats().bytesUsed()).isEqualTo(seq.bytesHeld()).isPositive();
        }
    }

    @Test
    void compressedAndEvictingPoliciesHoldLess() {
        KvEval.Options o = new KvEval.Options(161, 0, 161);
        KvEval.Result fp16 = KvEval.run(model, kvm, KvCachePolicy.parse("fp16"), tokens, o, null);
        KvEval.Result int8 = KvEval.run(model, kvm, KvCachePolicy.parse("int8"), tokens, o, null);
        KvEval.Result sink = KvEval.run(model, kvm, KvCachePolicy.parse("fp16+sink:sinks=4,window=16"), tokens, o, null);
        assertThat(int8.bytesPerTokenEnd()).isLessThan(fp16.bytesPerTokenEnd());
        assertThat(int8.ratioEnd()).isGreaterThan(1.0);
        // 160 tokens fed, at most sinks + window + a block of slack kept per layer and head
        assertThat(sink.bytesPerTokenEnd() * 160).isLessThan(fp16.bytesPerTokenEnd() * (4 + 16 + 2 * 16));
        assertThat(sink.ratioEnd()).isGreaterThan(3.0);
        // lossy but close on a short text; eviction of a 16-token window costs more
        assertThat(int8.ppl()).isCloseTo(fp16.ppl(), within(fp16.ppl() * 0.05));
        assertThat(sink.ppl()).isGreaterThan(fp16.ppl());
    }
}
