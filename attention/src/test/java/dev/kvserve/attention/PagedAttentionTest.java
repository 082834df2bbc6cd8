package dev.kvserve.attention;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.KvGeometry;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

class PagedAttentionTest {

    static final KvGeometry SMALL = new KvGeometry(2, 4, 2, 8, 4096, new RopeConfig(8, 10000f, 1f, false));
    static final KvGeometry MQA16 = new KvGeometry(1, 4, 1, 16, 4096, new RopeConfig(16, 10000f, 1f, true));
    static final KvGeometry WIDE = new KvGeometry(1, 4, 2, 64, 4096, new RopeConfig(32, 500000f, 1f, true));

    static Stream<Arguments> geometries() {
        return Stream.of(
                Arguments.of(SMALL, 16, 1, 11L),
                Arguments.of(SMALL, 4, 3, 12L),
                Arguments.of(MQA16, 16, 2, 13L),
                Arguments.of(WIDE, 8, 2, 14L));
    }

    @ParameterizedTest
    @MethodSource("geometries")
    void fp32MatchesNaiveFullAttentionAcrossChunkedPrefillDecodeAndBatching(KvGeometry g, int blockTokens, int threads, long seed) {
        try (Harness h = new Harness(g, 64 << 20, blockTokens, threads, seed)) {
            Random rnd = new Random(seed);
            List<Harness.Seq> seqs = List.of(h.open("fp32"), h.open("fp32"), h.open("fp32"));
            for (int step = 0; step < 12; step++) {
                int[] tokens = new int[seqs.size()];
                for (int i = 0; i < tokens.length; i++) tokens[i] = step < 3 ? 1 + rnd.nextInt(40) : 1;
                Harness.StepResult r = h.step(seqs, tokens, null, null);
                for (int l = 0; l < g.layers(); l++) {
                    for (int i = 0; i < r.paged()[l].length; i++) {
                        assertThat((double) r.paged()[l][i]).isCloseTo(r.reference()[l][i], org.assertj.core.data.Offset.offset(1e-5 + 1e-5 * Math.abs(r.reference()[l][i])));
                    }
                }
            }
        }
    }

    @Test
    void resultsDoNotDependOnThreadCount() {
        float[][] one = runFixed(1);
        float[][] four = runFixed(4);
        for (int l = 0; l < one.length; l++) assertThat(four[l]).containsExactly(one[l]);
    }

    private static float[][] runFixed(int threads) {
        try (Harness h = new Harness(SMALL, 16 << 20, 16, threads, 5)) {
            List<Harness.Seq> seqs = List.of(h.open("int4:group=4"), h.open("fp16"));
            h.step(seqs, new int[] {37, 21}, null, null);
            return h.step(seqs, new int[] {1, 1}, null, null).paged();
        }
    }

    static Stream<Arguments> lossyFormats() {
        // policy, block size, bound on the relative L2 error of attention outputs vs exact attention
        return Stream.of(
                Arguments.of("fp16", 16, 1.5e-3),
                Arguments.of("int8", 16, 1.5e-2),
                Arguments.of("int8:group=4", 4, 1e-2),
                Arguments.of("int4", 16, 0.2),
                Arguments.of("int4:group=4", 16, 0.16),
                Arguments.of("kivi:bits=4,group=4,residual=16", 16, 0.1),
                Arguments.of("kivi:bits=2,group=4,residual=16", 16, 0.6),
                Arguments.of("kivi:bits=2,group=32,residual=8", 8, 0.75));
    }

    @ParameterizedTest
    @MethodSource("lossyFormats")
    void lossyFormatsStayWithinTheirErrorBound(String spec, int blockTokens, double bound) {
        try (Harness h = new Harness(SMALL, 64 << 20, blockTokens, 2, 21)) {
            Harness.Seq s = h.open(spec);
            double worst = 0;
            Harness.StepResult r = h.step(s, 60);
            for (int l = 0; l < SMALL.layers(); l++) worst = Math.max(worst, Harness.relativeError(r.paged()[l], r.reference()[l]));
            for (int i = 0; i < 30; i++) {
                r = h.step(s, 1);
                for (int l = 0; l < SMALL.layers(); l++) worst = Math.max(worst, Harness.relativeError(r.paged()[l], r.reference()[l]));
            }
            assertThat(worst).as("relative error of %s", spec).isLessThan(bound).isGreaterThan(0);
        }
    }

    @Test
    void forkedSequencesDivergeWithoutDisturbingEachOther() {
        try (Harness h = new Harness(SMALL, 16 << 20, 4, 2, 31)) {
            Harness.Seq a = h.open("int8");
            h.step(a, 10);
            Harness.Seq b = h.fork(a);
            Harness.Seq c = h.fork(a);
            for (int i = 0; i < 6; i++) {
                Harness.StepResult r = h.step(List.of(a, b, c), new int[] {1, 2, 1}, null, null);
                Harness.StepResult again = r;
                for (int l = 0; l < SMALL.layers(); l++) {
                    assertThat(Harness.relativeError(again.paged()[l], again.reference()[l])).isLessThan(2e-2);
                }
            }
            assertThat(a.cache.length()).isEqualTo(16);
            assertThat(b.cache.length()).isEqualTo(22);
        }
    }

    @Test
    void fp32ForkIsExact() {
        try (Harness h = new Harness(SMALL, 16 << 20, 4, 1, 32)) {
            Harness.Seq a = h.open("fp32");
            h.step(a, 9);
            Harness.Seq b = h.fork(a);
            for (int i = 0; i < 5; i++) {
                Harness.StepResult r = h.step(List.of(a, b), new int[] {1, 3}, null, null);
                for (int l = 0; l < SMALL.layers(); l++) assertThat(Harness.maxAbsDiff(r.paged()[l], r.reference()[l])).isLessThan(2e-5);
            }
        }
    }

    @Test
    void rejectsAStepThatDoesNotStartWhereTheSequenceEnds() {
        try (Harness h = new Harness(SMALL, 1 << 20, 16, 1, 1)) {
            Harness.Seq s = h.open("fp32");
            h.step(s, 3);
            var arena = h.arena;
            var q = arena.allocate(2L * 4 * 4 * 8);
            var k = arena.allocate(4L * 2 * 8);
            StepBatch bad = new StepBatch(List.of(new StepBatch.Entry(s.cache, 0, 1, 2)));
            assertThatThrownBy(() -> h.attention.attend(0, bad, q, k, k, q))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("step starts at position 2 but the sequence holds 3 tokens");
            StepBatch ok = new StepBatch(List.of(new StepBatch.Entry(s.cache, 0, 1, 3)));
            assertThatThrownBy(() -> h.attention.attend(2, ok, q, k, k, q)).hasMessageContaining("layer 2 outside [0, 2)");
            assertThatThrownBy(() -> h.attention.attend(0, new StepBatch(List.of(new StepBatch.Entry(s.cache, 0, 2, 3))), q, k, k, q))
                    .hasMessageContaining("k buffer holds 64 bytes, step needs 128");
        }
    }

    @Test
    void manyShortSequencesInOneBatch() {
        try (Harness h = new Harness(MQA16, 16 << 20, 16, 3, 41)) {
            List<Harness.Seq> seqs = new ArrayList<>();
            for (int i = 0; i < 9; i++) seqs.add(h.open(i % 3 == 0 ? "fp32" : i % 3 == 1 ? "fp16" : "int8:group=8"));
            int[] tokens = new int[9];
            for (int step = 0; step < 4; step++) {
                for (int i = 0; i < 9; i++) tokens[i] = step == 0 ? 1 + i : 1;
                Harness.StepResult r = h.step(seqs, tokens, null, null);
                assertThat(Harness.relativeError(r.paged()[0], r.reference()[0])).isLessThan(1e-2);
            }
        }
    }
}
