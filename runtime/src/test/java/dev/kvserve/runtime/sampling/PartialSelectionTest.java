package dev.kvserve.runtime.sampling;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.Arrays;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@link Sampler} orders only the tokens top-k and top-p keep (a bounded heap, a lazily popped
 * heap); {@link FullSortSampler}, the sampler before that change, sorted every candidate of the
 * top-p window. Same seed, same logits: the same tokens, log-probabilities and distributions, bit
 * for bit, over random logit vectors of several shapes and every combination of the truncations.
 */
class PartialSelectionTest {

    private static final float[] TEMPERATURES = {0f, 0.3f, 0.8f, 1f, 1.7f};
    private static final int[] TOP_K = {0, 1, 2, 7, 40, 500, 100_000};
    private static final float[] TOP_P = {1f, 0.05f, 0.5f, 0.9f, 0.95f, 0.999f};
    private static final float[] MIN_P = {0f, 0.001f, 0.05f, 0.3f};

    /** Random logits: gaussian of a random scale, nearly flat, heavily tied, or with -infinity holes. */
    private static float[] logits(SplittableRandom random, int n, int shape) {
        float[] logits = new float[n];
        double scale = switch (shape) {
            case 1 -> 0.05;   // nearly flat: top-p's window holds the whole vocabulary
            case 2 -> 1;
            default -> 0.5 + random.nextDouble() * 6;
        };
        for (int i = 0; i < n; i++) {
            double v = random.nextGaussian() * scale;
            if (shape == 2) v = Math.round(v * 2) / 2.0;   // few distinct values: ties broken by id
            logits[i] = (float) v;
        }
        if (shape == 3) {
            for (int i = 0; i < n; i++) if (random.nextInt(4) == 0) logits[i] = Float.NEGATIVE_INFINITY;
            logits[random.nextInt(n)] = 0f;
        }
        if (shape == 4) logits[random.nextInt(n)] += 12f;   // one dominant token
        return logits;
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 1, 2, 3, 4})
    void sameTokensLogprobsAndDistributionsAsTheFullSort(int shape) {
        SplittableRandom random = new SplittableRandom(1000 + shape);
        int combinations = 0;
        for (float temperature : TEMPERATURES) {
            for (int topK : TOP_K) {
                for (float topP : TOP_P) {
                    for (float minP : MIN_P) {
                        boolean penalties = random.nextInt(3) == 0;
                        var params = new SamplingParams(temperature, topK, topP, minP, penalties ? 1.3f : 1f,
                                penalties ? 0.4f : 0f, penalties ? 0.2f : 0f, 64, random.nextLong());
                        int n = random.nextInt(8) == 0 ? 49_152 : 50 + random.nextInt(3_000);
                        compare(params, random, n, shape);
                        combinations++;
                    }
                }
            }
        }
        assertThat(combinations).isEqualTo(TEMPERATURES.length * TOP_K.length * TOP_P.length * MIN_P.length);
    }

    private static void compare(SamplingParams params, SplittableRandom random, int n, int shape) {
        var partial = new Sampler(params);
        var full = new FullSortSampler(params);
        int[] history = random.ints(1 + random.nextInt(100), 0, n).toArray();
        IntCollection h = new IntCollection() {
            @Override public int size() { return history.length; }
            @Override public int get(int index) { return history[index]; }
        };
        for (int step = 0; step < 6; step++) {
            float[] logits = logits(random, n, shape);
            float[] copy = logits.clone();
            if (step % 3 == 2) {
                SampledToken a = partial.sample(logits, h, 1 + random.nextInt(8));
                SampledToken b = full.sample(copy, h, a.topTokens().length);
                assertThat(a.token()).as("%s step %d", params, step).isEqualTo(b.token());
                assertThat(a.logprob()).isEqualTo(b.logprob());
                assertThat(a.topTokens()).isEqualTo(b.topTokens());
                assertThat(a.topLogprobs()).isEqualTo(b.topLogprobs());
            } else if (step % 3 == 1) {
                float[] a = partial.distribution(logits, h);
                float[] b = full.distribution(copy, h);
                assertThat(Arrays.equals(a, b)).as("distribution, %s step %d", params, step).isTrue();
            } else {
                assertThat(partial.sample(logits, h)).as("%s step %d", params, step).isEqualTo(full.sample(copy, h));
            }
            assertThat(logits).as("the caller's logits are not modified").isEqualTo(copy);
        }
    }
}
