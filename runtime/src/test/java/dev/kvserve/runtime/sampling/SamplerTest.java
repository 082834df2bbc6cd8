package dev.kvserve.runtime.sampling;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

class SamplerTest {
    private static final IntCollection NO_HISTORY = IntCollection.empty();

    private static float[] logitsOf(double... probabilities) {
        float[] logits = new float[probabilities.length];
        for (int i = 0; i < logits.length; i++) {
            logits[i] = (float) Math.log(probabilities[i]);
        }
        return logits;
    }

    private static SamplingParams plain() {
        return SamplingParams.defaults().withSeed(42L);
    }

    @Test
    void greedyTakesTheArgmaxAndTheLowestIdOnTies() {
        Sampler greedy = new Sampler(SamplingParams.greedy());
        assertThat(greedy.sample(new float[]{0.1f, 3f, -2f, 2.9f}, NO_HISTORY)).isEqualTo(1);
        assertThat(greedy.sample(new float[]{1f, 5f, 5f, Float.NEGATIVE_INFINITY}, NO_HISTORY)).isEqualTo(1);
        assertThat(greedy.distribution(new float[]{1f, 5f, 2f}, NO_HISTORY)).containsExactly(0f, 1f, 0f);
    }

    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3})
    void sameSeedSameTokens(long seed) {
        SplittableRandom logitSource = new SplittableRandom(99);
        float[][] steps = new float[200][];
        for (int s = 0; s < steps.length; s++) {
            steps[s] = new float[500];
            for (int i = 0; i < 500; i++) steps[s][i] = (float) (logitSource.nextGaussian() * 3);
        }
        SamplingParams params = new SamplingParams(0.9f, 40, 0.95f, 0.05f, 1.1f, 0.1f, 0.1f, 64, seed);
        int[] first = run(new Sampler(params), steps);
        int[] second = run(new Sampler(params), steps);
        int[] otherSeed = run(new Sampler(params.withSeed(seed + 100)), steps);
        assertThat(second).isEqualTo(first);
        assertThat(otherSeed).isNotEqualTo(first);
    }

    private static int[] run(Sampler sampler, float[][] steps) {
        IntList history = new IntList();
        int[] tokens = new int[steps.length];
        for (int s = 0; s < steps.length; s++) {
            tokens[s] = sampler.sample(steps[s], history);
            history.add(tokens[s]);
        }
        return tokens;
    }

    @Test
    void temperatureScalesLogits() {
        float[] logits = {0f, (float) Math.log(2)};
        float[] hot = new Sampler(plain().withTemperature(0.5f)).distribution(logits, NO_HISTORY);
        assertThat(hot[0]).isCloseTo(0.2f, within(1e-6f)); // weights 1 : 2^2
        assertThat(hot[1]).isCloseTo(0.8f, within(1e-6f));
        float[] cool = new Sampler(plain().withTemperature(2f)).distribution(logits, NO_HISTORY);
        assertThat(cool[1] / cool[0]).isCloseTo((float) Math.sqrt(2), within(1e-5f));
    }

    @Test
    void topKKeepsTheKBest() {
        float[] p = new Sampler(plain().withTopK(2)).distribution(logitsOf(0.1, 0.4, 0.2, 0.3), NO_HISTORY);
        assertThat(p[0]).isZero();
        assertThat(p[2]).isZero();
        assertThat(p[1]).isCloseTo(4f / 7, within(1e-6f));
        assertThat(p[3]).isCloseTo(3f / 7, within(1e-6f));
        assertThat(new Sampler(plain().withTopK(1).withTemperature(5f)).sample(logitsOf(0.1, 0.4, 0.2, 0.3), NO_HISTORY)).isEqualTo(1);
    }

    @Test
    void topPKeepsTheSmallestSetReachingP() {
        float[] logits = logitsOf(0.5, 0.3, 0.15, 0.05);
        float[] p75 = new Sampler(plain().withTopP(0.75f)).distribution(logits, NO_HISTORY);
        assertThat(p75[0]).isCloseTo(0.5f / 0.8f, within(1e-6f));
        assertThat(p75[1]).isCloseTo(0.3f / 0.8f, within(1e-6f));
        assertThat(p75[2]).isZero();
        float[] p85 = new Sampler(plain().withTopP(0.85f)).distribution(logits, NO_HISTORY);
        assertThat(p85[2]).isCloseTo(0.15f / 0.95f, within(1e-6f));
        assertThat(p85[3]).isZero();
        float[] tiny = new Sampler(plain().withTopP(0.01f)).distribution(logits, NO_HISTORY);
        assertThat(tiny).containsExactly(1f, 0f, 0f, 0f);
    }

    @Test
    void topPOnALargeFlatVocabularySortsOnlyWhatItNeeds() {
        // 10 strong tokens with 90% of the mass over 50,000 weak ones: the window search must still be exact.
        int n = 50_010;
        float[] logits = new float[n];
        double strong = 0.09;
        double weak = 0.1 / 50_000;
        for (int i = 0; i < n; i++) logits[i] = (float) Math.log(i % 5001 == 0 ? strong : weak);
        float[] p = new Sampler(plain().withTopP(0.5f)).distribution(logits, NO_HISTORY);
        int nonZero = 0;
        for (float v : p) if (v > 0) nonZero++;
        assertThat(nonZero).isEqualTo(6); // 6 × 0.09 ≥ 0.5 > 5 × 0.09
        float[] wide = new Sampler(plain().withTopP(0.925003f)).distribution(logits, NO_HISTORY);
        nonZero = 0;
        for (float v : wide) if (v > 0) nonZero++;
        assertThat(nonZero).isEqualTo(10 + 12_502); // 0.9 + k × 2e-6 ≥ 0.925003 first at k = 12,502
    }

    @Test
    void minPDropsTokensFarBelowTheBest() {
        float[] logits = logitsOf(0.5, 0.3, 0.15, 0.05);
        float[] p = new Sampler(plain().withMinP(0.2f)).distribution(logits, NO_HISTORY);
        assertThat(p[3]).isZero();
        assertThat(p[2]).isCloseTo(0.15f / 0.95f, within(1e-6f));
        float[] strict = new Sampler(plain().withMinP(0.5f)).distribution(logits, NO_HISTORY);
        assertThat(strict[0]).isCloseTo(0.625f, within(1e-6f));
        assertThat(strict[2]).isZero();
    }

    @Test
    void penaltiesFollowLlamaCpp() {
        float[] logits = {2f, -2f, 1f, 0.5f};
        SamplingParams params = plain().withRepetitionPenalty(2f).withFrequencyPenalty(0.5f).withPresencePenalty(0.25f);
        float[] penalized = new Sampler(params).prepare(logits, IntList.of(0, 1, 0));
        // token 0 seen twice: 2/2 - (2*0.5 + 0.25); token 1 once: -2*2 - (0.5 + 0.25)
        assertThat(penalized).containsExactly(-0.25f, -4.75f, 1f, 0.5f);
        assertThat(logits).containsExactly(2f, -2f, 1f, 0.5f);

        float[] lastOnly = new Sampler(params.withPenaltyLastN(1)).prepare(logits, IntList.of(0, 1, 0));
        assertThat(lastOnly).containsExactly(2f / 2 - 0.75f, -2f, 1f, 0.5f);
        float[] off = new Sampler(params.withPenaltyLastN(0)).prepare(logits, IntList.of(0, 1, 0));
        assertThat(off).containsExactly(logits);
        // Greedy still sees the penalties: token 0 would win without them.
        assertThat(new Sampler(SamplingParams.greedy().withRepetitionPenalty(4f)).sample(new float[]{2f, 1f}, IntList.of(0))).isEqualTo(1);
    }

    @Test
    void drawsFollowTheDistribution() {
        float[] logits = logitsOf(0.6, 0.3, 0.1);
        Sampler sampler = new Sampler(plain());
        int[] counts = new int[3];
        int draws = 20_000;
        for (int i = 0; i < draws; i++) counts[sampler.sample(logits, NO_HISTORY)]++;
        assertThat(counts[0] / (double) draws).isCloseTo(0.6, within(0.02));
        assertThat(counts[1] / (double) draws).isCloseTo(0.3, within(0.02));
        assertThat(counts[2] / (double) draws).isCloseTo(0.1, within(0.02));
    }

    @Test
    void logprobsComeFromThePenalizedLogitsBeforeTemperature() {
        float[] logits = logitsOf(0.5, 0.3, 0.15, 0.05);
        SampledToken hot = new Sampler(plain().withTemperature(3f).withTopK(1)).sample(logits, NO_HISTORY, 3);
        assertThat(hot.token()).isZero();
        assertThat(hot.logprob()).isCloseTo((float) Math.log(0.5), within(1e-6f));
        assertThat(hot.topTokens()).containsExactly(0, 1, 2);
        assertThat(hot.topLogprobs()[1]).isCloseTo((float) Math.log(0.3), within(1e-6f));
        assertThat(hot.topLogprobs()[2]).isCloseTo((float) Math.log(0.15), within(1e-6f));

        SampledToken penalized = new Sampler(SamplingParams.greedy().withPresencePenalty(2f)).sample(logits, IntList.of(0), 1);
        // token 0 loses 2 nats: weights 0.5e^-2, 0.3, 0.15, 0.05
        double normalizer = 0.5 * Math.exp(-2) + 0.5;
        assertThat(penalized.token()).isEqualTo(1);
        assertThat(penalized.logprob()).isCloseTo((float) Math.log(0.3 / normalizer), within(1e-6f));
        assertThat(penalized.topTokens()).containsExactly(1);
        assertThat(new Sampler(plain()).sample(logits, NO_HISTORY, 10).topTokens()).hasSize(4);
    }

    @Test
    void badInputIsRejectedClearly() {
        Sampler sampler = new Sampler(plain().withRepetitionPenalty(1.2f));
        assertThatThrownBy(() -> sampler.sample(new float[]{0f, Float.NaN}, NO_HISTORY)).hasMessageContaining("token 1");
        assertThatThrownBy(() -> sampler.sample(new float[0], NO_HISTORY)).hasMessageContaining("empty");
        assertThatThrownBy(() -> sampler.sample(new float[]{Float.NEGATIVE_INFINITY}, NO_HISTORY)).hasMessageContaining("-infinity");
        assertThatThrownBy(() -> sampler.sample(new float[]{0f, 1f}, IntList.of(7))).hasMessageContaining("history token 7");
        assertThatThrownBy(() -> plain().withTopP(0f)).hasMessageContaining("topP");
        assertThatThrownBy(() -> plain().withTemperature(-1f)).hasMessageContaining("temperature");
        assertThatThrownBy(() -> plain().withMinP(1.5f)).hasMessageContaining("minP");
        assertThatThrownBy(() -> plain().withTopK(-2)).hasMessageContaining("topK");
        assertThatThrownBy(() -> plain().withRepetitionPenalty(0f)).hasMessageContaining("repetitionPenalty");
        assertThatThrownBy(() -> plain().withPresencePenalty(3f)).hasMessageContaining("presencePenalty");
        assertThatThrownBy(() -> plain().withFrequencyPenalty(Float.NaN)).hasMessageContaining("frequencyPenalty");
        assertThatThrownBy(() -> plain().withPenaltyLastN(-5)).hasMessageContaining("penaltyLastN");
        assertThatThrownBy(() -> sampler.sample(new float[]{1f}, NO_HISTORY, -1)).hasMessageContaining("topLogprobs");
    }

    @Test
    void greedyWithoutPenaltiesReadsTheCallersLogitsAndRejectsBadOnesAlike() {
        Sampler greedy = new Sampler(SamplingParams.greedy());
        assertThatThrownBy(() -> greedy.sample(new float[]{0f, Float.NaN}, NO_HISTORY)).hasMessageContaining("token 1");
        assertThatThrownBy(() -> greedy.sample(new float[]{5f, Float.POSITIVE_INFINITY}, NO_HISTORY)).hasMessageContaining("token 1");
        assertThatThrownBy(() -> greedy.sample(new float[0], NO_HISTORY)).hasMessageContaining("empty");
        assertThatThrownBy(() -> greedy.sample(null, NO_HISTORY)).hasMessageContaining("empty");
        assertThatThrownBy(() -> greedy.sample(new float[]{Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY}, NO_HISTORY))
                .hasMessageContaining("-infinity");
        float[] logits = {Float.NEGATIVE_INFINITY, -3f, 2f, 2f, -0f, 1f};
        float[] before = logits.clone();
        assertThat(greedy.sample(logits, NO_HISTORY)).isEqualTo(2);
        assertThat(greedy.sample(new float[]{Float.NEGATIVE_INFINITY, -7f}, NO_HISTORY)).isEqualTo(1);
        assertThat(logits).isEqualTo(before);
        // the one-pass argmax agrees with the copying path that log-probabilities take
        SplittableRandom random = new SplittableRandom(3);
        for (int t = 0; t < 200; t++) {
            float[] l = new float[1 + random.nextInt(300)];
            for (int i = 0; i < l.length; i++) l[i] = random.nextInt(5) == 0 ? Float.NEGATIVE_INFINITY : random.nextInt(7) - 3;
            l[random.nextInt(l.length)] = random.nextInt(7) - 3;
            assertThat(greedy.sample(l, NO_HISTORY)).isEqualTo(greedy.sample(l, NO_HISTORY, 0).token());
        }
    }

    /** llama.cpp's chain written plainly: sort everything, top-k, top-p, min-p, temperature. */
    private static double[] naiveDistribution(float[] logits, SamplingParams params) {
        Integer[] order = new Integer[logits.length];
        for (int i = 0; i < order.length; i++) order[i] = i;
        java.util.Arrays.sort(order, (a, b) -> logits[a] != logits[b] ? Float.compare(logits[b], logits[a]) : Integer.compare(a, b));
        int count = params.topK() > 0 ? Math.min(params.topK(), order.length) : order.length;
        double max = logits[order[0]];
        double normalizer = 0;
        for (int i = 0; i < count; i++) normalizer += Math.exp(logits[order[i]] - max);
        if (params.topP() < 1) {
            double cumulative = 0;
            for (int i = 0; i < count; i++) {
                cumulative += Math.exp(logits[order[i]] - max) / normalizer;
                if (cumulative >= params.topP()) {
                    count = i + 1;
                    break;
                }
            }
        }
        if (params.minP() > 0) {
            int kept = 0;
            while (kept < count && logits[order[kept]] >= max + Math.log(params.minP())) kept++;
            count = Math.max(kept, 1);
        }
        double[] p = new double[logits.length];
        double total = 0;
        for (int i = 0; i < count; i++) total += p[order[i]] = Math.exp((logits[order[i]] - max) / params.temperature());
        for (int i = 0; i < count; i++) p[order[i]] /= total;
        return p;
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
    void truncationEqualsTheNaiveChain(int seed) {
        SplittableRandom random = new SplittableRandom(seed);
        float[] logits = new float[2_000];
        for (int i = 0; i < logits.length; i++) logits[i] = (float) (random.nextGaussian() * (1 + seed % 4) * 2);
        SamplingParams params = new SamplingParams(0.2f + random.nextInt(15) / 10f, random.nextInt(4) == 0 ? 0 : 1 + random.nextInt(300),
                random.nextBoolean() ? 1f : 0.3f + random.nextInt(70) / 100f, random.nextBoolean() ? 0f : random.nextInt(30) / 100f,
                1f, 0f, 0f, 64, 1L);
        float[] fast = new Sampler(params).distribution(logits, NO_HISTORY);
        double[] naive = naiveDistribution(logits, params);
        for (int i = 0; i < logits.length; i++) {
            assertThat((double) fast[i]).as("token %d with %s", i, params).isCloseTo(naive[i], within(1e-6));
        }
    }
}
