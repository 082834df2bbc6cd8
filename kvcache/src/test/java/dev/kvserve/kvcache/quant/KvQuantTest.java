package dev.kvserve.kvcache.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.data.Offset.offset;

import dev.kvserve.kvcache.KvGeometry;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class KvQuantTest {

    private static final KvGeometry GEO = Fixtures.geometry();
    private static final KvSamples SAMPLES = Fixtures.samples(GEO, 4, 96, 100, true);

    private static KvQuantCalibration calibrate(String spec) {
        return (KvQuantCalibration) Calibrator.fit("kvquant", spec, SAMPLES, null);
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 3, 4})
    void roundTripErrorIsWithinTheCodebookBoundAndOutliersAreExact(int bits) {
        KvQuantCalibration cal = calibrate("bits=" + bits + ",qnorm=false");
        int tokens = 80, c = GEO.kvDim();
        float[][][] seq = Fixtures.sequence(GEO, tokens, 7, true);
        CompressedKv kv = Oracles.open(cal);
        Fixtures.fill(kv, seq, tokens, 13);
        float[] k = new float[tokens * c], v = new float[tokens * c];
        Integer[] order = new Integer[c];
        long keyOutliers = 0, valueOutliers = 0;
        for (int l = 0; l < GEO.layers(); l++) {
            kv.reconstruct(l, k, v);
            float[] zero = cal.keyZero(l), range = cal.keyRange(l);
            double kb = Fixtures.codebookBound(cal.keyCodebook(l).signposts());
            double vb = Fixtures.codebookBound(cal.valueCodebook(l).signposts());
            for (int t = 0; t < tokens; t++) {
                for (int i = 0; i < c; i++) {
                    float x = seq[0][l][t * c + i];
                    if (t == 0) {
                        assertThat(k[i]).isEqualTo(Half.round(x));
                        continue;
                    }
                    float u = (x - zero[i]) / range[i];
                    if (u > 1 || u < -1) {
                        keyOutliers++;
                        assertThat(k[t * c + i]).as("key outlier kept exactly (binary16)").isEqualTo(Half.round(x));
                    } else {
                        assertThat((double) k[t * c + i]).isCloseTo(x, offset(range[i] * kb + 1e-5));
                    }
                }
                if (t == 0) {
                    for (int i = 0; i < c; i++) assertThat(v[i]).isEqualTo(Half.round(seq[1][l][i]));
                    continue;
                }
                boolean[] out = KvQuantCalibration.outlierMask(cal.config(), seq[1][l], t * c, c, order);
                float min = Float.POSITIVE_INFINITY, max = Float.NEGATIVE_INFINITY;
                for (int i = 0; i < c; i++) {
                    if (out[i]) continue;
                    min = Math.min(min, seq[1][l][t * c + i]);
                    max = Math.max(max, seq[1][l][t * c + i]);
                }
                float z = Half.round((max + min) / 2), r = Half.round((max - min) / 2);
                for (int i = 0; i < c; i++) {
                    float x = seq[1][l][t * c + i];
                    if (out[i]) {
                        valueOutliers++;
                        assertThat(v[t * c + i]).as("value outlier kept exactly (binary16)").isEqualTo(Half.round(x));
                    } else {
                        assertThat((double) v[t * c + i]).isCloseTo(x, offset(r * (vb + 2e-3) + Math.abs(z) * 2e-3 + 1e-5));
                    }
                }
            }
        }
        // 1% outliers over 16 values: one from each end per token.
        assertThat(valueOutliers).isEqualTo(2L * GEO.layers() * (tokens - 1));
        assertThat(keyOutliers).isPositive();
        long expected = GEO.layers() * (4L * c)                     // one fp16 sink token (K and V)
                + (long) (tokens - 1) * cal.bytesPerToken()         // codes, value scales, sparse pointers and counts
                + 4 * (keyOutliers + valueOutliers);                // 16-bit index + binary16 value each
        assertThat(kv.bytesHeld()).isEqualTo(expected);
        assertThat(cal.bytesPerToken()).isEqualTo(GEO.layers() * (2L * BitPacking.bytesFor(c, bits) + 4 + 12));
    }

    @Test
    void errorShrinksWithMoreBits() {
        int tokens = 64, c = GEO.kvDim();
        float[][][] seq = Fixtures.sequence(GEO, tokens, 8, false);
        double previous = Double.POSITIVE_INFINITY;
        for (int bits = 2; bits <= 4; bits++) {
            CompressedKv kv = Oracles.open(calibrate("bits=" + bits + ",outliers=0"));
            Fixtures.fill(kv, seq, tokens, tokens);
            float[] k = new float[tokens * c], v = new float[tokens * c];
            double err = 0;
            for (int l = 0; l < GEO.layers(); l++) {
                kv.reconstruct(l, k, v);
                for (int i = 0; i < k.length; i++) err += Math.pow(k[i] - seq[0][l][i], 2) + Math.pow(v[i] - seq[1][l][i], 2);
            }
            assertThat(err).isLessThan(previous);
            previous = err;
        }
    }

    @Test
    void codebookFittingRecoversKnownLevels() {
        // Every channel takes one of four levels (in units of the channel's own half-range) plus tiny
        // noise: with min/max normalisation (no outliers) the 2-bit codebook must find the four levels.
        KvGeometry g = Fixtures.geometry(1, 2, 2, 8);
        float[] levels = {-0.9f, -0.3f, 0.4f, 0.95f};
        double mid = (0.95 - 0.9) / 2, half = (0.95 + 0.9) / 2;
        Random r = new Random(4);
        int tokens = 2000, c = g.kvDim();
        float[][] keys = {new float[tokens * c]}, values = {new float[tokens * c]};
        for (int t = 0; t < tokens; t++) {
            for (int i = 0; i < c; i++) {
                keys[0][t * c + i] = (i - 3) + (1 + i * 0.1f) * (levels[r.nextInt(4)] + (float) (0.003 * r.nextGaussian()));
                values[0][t * c + i] = (float) r.nextGaussian();
            }
            // Pin the extremes so that every channel's min/max is exactly its outer levels.
            if (t < 2) for (int i = 0; i < c; i++) keys[0][t * c + i] = (i - 3) + (1 + i * 0.1f) * levels[t == 0 ? 0 : 3];
        }
        KvSamples s = KvSamples.builder(g).addSequence(keys, values, null, null).build();
        KvQuantCalibration cal = KvQuantCalibration.fit(KvQuantConfig.parse("bits=2,outliers=0,fisher=false,sinks=0"), s,
                CalibrationProgress.NONE);
        float[] sp = cal.keyCodebook(0).signposts();
        for (int j = 0; j < 4; j++) assertThat((double) sp[j]).isCloseTo((levels[j] - mid) / half, offset(0.01));
    }

    @Test
    void fisherWeightingMovesSignpostsTowardSensitiveValues() {
        KvGeometry g = Fixtures.geometry(1, 2, 2, 8);
        Random r = new Random(6);
        int tokens = 3000, c = g.kvDim();
        float[][] keys = {new float[tokens * c]}, values = {new float[tokens * c]};
        float[][] kg = {new float[tokens * c]}, vg = {new float[tokens * c]};
        for (int i = 0; i < tokens * c; i++) {
            keys[0][i] = (float) r.nextGaussian();
            values[0][i] = (float) r.nextGaussian();
            // Gradients are large only where the key is positive.
            kg[0][i] = keys[0][i] > 0 ? 1f : 0.01f;
            vg[0][i] = 1f;
        }
        KvSamples s = KvSamples.builder(g).addSequence(keys, values, kg, vg).build();
        float[] plain = KvQuantCalibration.fit(KvQuantConfig.parse("bits=3,fisher=false"), s, CalibrationProgress.NONE).keyCodebook(0).signposts();
        float[] fisher = KvQuantCalibration.fit(KvQuantConfig.parse("bits=3,fisher=true"), s, CalibrationProgress.NONE).keyCodebook(0).signposts();
        assertThat(Arrays.stream(box(fisher)).filter(x -> x > 0).count()).isGreaterThan(Arrays.stream(box(plain)).filter(x -> x > 0).count());
    }

    private static Float[] box(float[] a) {
        Float[] b = new Float[a.length];
        for (int i = 0; i < a.length; i++) b[i] = a[i];
        return b;
    }

    @Test
    void qNormRestoresMeanAndSpreadOfTheCalibrationData() {
        KvQuantCalibration cal = calibrate("bits=2,qnorm=true");
        NuqCodebook book = cal.keyCodebook(1);
        assertThat(book.qNorm()).isTrue();
        int[] rows = SAMPLES.rowsFrom(1);
        float[] zero = cal.keyZero(1), range = cal.keyRange(1);
        int c = GEO.kvDim();
        double m1 = 0, m2 = 0, n = 0;
        double[] us = new double[rows.length * c];
        double[] qs = new double[rows.length * c];
        for (int row : rows) {
            for (int i = 0; i < c; i++) {
                float u = (SAMPLES.keys(1)[row * c + i] - zero[i]) / range[i];
                if (u > 1 || u < -1) continue;
                us[(int) n] = u;
                qs[(int) n] = book.decode(book.encode(u));
                m1 += u;
                m2 += qs[(int) n];
                n++;
            }
        }
        m1 /= n;
        m2 /= n;
        double v1 = 0, v2 = 0;
        for (int i = 0; i < n; i++) {
            v1 += (us[i] - m1) * (us[i] - m1);
            v2 += (qs[i] - m2) * (qs[i] - m2);
        }
        assertThat(m2).isCloseTo(m1, offset(1e-4));
        assertThat(Math.sqrt(v2 / n)).isCloseTo(Math.sqrt(v1 / n), offset(1e-4));
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 4})
    void attentionOverCodesEqualsAttentionOverTheReconstruction(int bits) {
        KvQuantCalibration cal = calibrate("bits=" + bits);
        int tokens = 40;
        float[][][] seq = Fixtures.sequence(GEO, tokens, 9, true);
        CompressedKv kv = Oracles.open(cal);
        Fixtures.fill(kv, seq, tokens, 7);
        int rows = 5, pos0 = tokens - rows, c = GEO.kvDim();
        float[] q = Fixtures.randomQueries(GEO, rows, 3);
        float[] k = new float[tokens * c], v = new float[tokens * c];
        for (int l = 0; l < GEO.layers(); l++) {
            float[] out = new float[q.length];
            kv.attend(l, q, rows, pos0, out);
            kv.reconstruct(l, k, v);
            float[] ref = Fixtures.referenceAttention(GEO, k, v, tokens, q, rows, pos0);
            assertThat(Fixtures.maxAbsDiff(out, ref)).isLessThan(2e-5);
            // And the quantized attention stays close to the unquantized one.
            float[] exact = Fixtures.referenceAttention(GEO, seq[0][l], seq[1][l], tokens, q, rows, pos0);
            assertThat(Fixtures.relativeError(out, exact)).isLessThan(bits == 4 ? 0.1 : 0.6);
        }
    }

    @Test
    void refusesFisherWithoutGradientsAndBadSettings() {
        KvSamples noGrad = Fixtures.samples(GEO, 1, 16, 1, false);
        assertThatThrownBy(() -> Calibrator.fit("kvquant", "bits=4", noGrad, null)).hasMessageContaining("fisher=false");
        assertThat(Calibrator.fit("kvquant", "bits=4,fisher=false", noGrad, null).spec()).contains("fisher=false");
        assertThatThrownBy(() -> KvQuantConfig.parse("bits=5")).hasMessageContaining("bits=5");
        assertThatThrownBy(() -> KvQuantConfig.parse("bitz=4")).hasMessageContaining("unknown option 'bitz'");
        assertThatThrownBy(() -> Calibrator.fit("nope", "", noGrad, null)).hasMessageContaining("unknown quantization method");
        CompressedKv kv = Oracles.open(calibrate("bits=4"));
        assertThatThrownBy(() -> kv.append(0, new float[16], new float[16], 1, 3)).hasMessageContaining("holds 0 tokens");
        assertThatThrownBy(() -> kv.attend(0, new float[32], 1, 0, new float[32])).hasMessageContaining("store a step's tokens");
    }
}
