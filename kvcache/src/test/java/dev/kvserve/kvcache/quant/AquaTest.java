package dev.kvserve.kvcache.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.data.Offset.offset;

import dev.kvserve.kvcache.KvGeometry;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class AquaTest {

    private static final KvGeometry GEO = Fixtures.geometry();
    private static final KvSamples SAMPLES = Fixtures.samples(GEO, 3, 96, 300, false);

    @Test
    void predictorsRecoverAKnownLinearMap() {
        // Layer 1 keys are an exact affine map of layer 0 keys, layer 1 values of [K1 ; V0].
        KvGeometry g = Fixtures.geometry(2, 2, 2, 4);
        int c = g.kvDim(), n = 600;
        Random r = new Random(8);
        float[] a = new float[c * c], b = new float[c], bv = new float[c * 2 * c], cv = new float[c];
        for (int i = 0; i < a.length; i++) a[i] = (float) r.nextGaussian() * 0.5f;
        for (int i = 0; i < bv.length; i++) bv[i] = (float) r.nextGaussian() * 0.5f;
        for (int i = 0; i < c; i++) {
            b[i] = (float) r.nextGaussian();
            cv[i] = (float) r.nextGaussian();
        }
        float[][] keys = new float[2][n * c], values = new float[2][n * c];
        for (int i = 0; i < n * c; i++) {
            keys[0][i] = Half.round((float) r.nextGaussian());
            values[0][i] = Half.round((float) r.nextGaussian());
        }
        RidgeRegression.Fit kTrue = new RidgeRegression.Fit(c, c, a, b);
        RidgeRegression.Fit vTrue = new RidgeRegression.Fit(2 * c, c, bv, cv);
        float[] x = new float[2 * c];
        for (int t = 0; t < n; t++) {
            kTrue.apply(keys[0], t * c, keys[1], t * c);
            System.arraycopy(keys[1], t * c, x, 0, c);
            System.arraycopy(values[0], t * c, x, c, c);
            vTrue.apply(x, 0, values[1], t * c);
        }
        // Layer 0 in fp16 (exact here) and 3-bit residuals, so layer 1's reconstructed keys are close to exact.
        KvSamples s = KvSamples.builder(g).addSequence(keys, values, null, null).build();
        AquaCalibration cal = AquaCalibration.fit(AquaConfig.parse("bits=3,first=fp16,ridge=0"), s, CalibrationProgress.NONE);
        RidgeRegression.Fit k = cal.keyPredictor(1);
        for (int i = 0; i < a.length; i++) assertThat((double) k.weight()[i]).isCloseTo(a[i], offset(1e-3));
        for (int i = 0; i < c; i++) assertThat((double) k.bias()[i]).isCloseTo(b[i], offset(1e-3));
        // The value predictor sees reconstructed (3-bit) keys, so it recovers the map only approximately.
        RidgeRegression.Fit v = cal.valuePredictor(1);
        for (int i = 0; i < bv.length; i++) assertThat((double) v.weight()[i]).isCloseTo(bv[i], offset(0.1));
        assertThat(cal.keyPredictor(0)).isNull();
    }

    @ParameterizedTest
    @ValueSource(strings = {"bits=2,buffer=8", "bits=3,buffer=5,prefix=2,first=fp16", "bits=2,dim=4,buffer=16,prefix=0,first=2"})
    void sequenceStoresPrefixBufferAndChunksAndAttendsOverThem(String spec) {
        AquaCalibration cal = (AquaCalibration) Calibrator.fit("aqua", spec, SAMPLES, null);
        AquaConfig cfg = cal.config();
        int tokens = 37, c = GEO.kvDim();
        float[][][] seq = Fixtures.sequence(GEO, tokens, 31, true);
        CompressedKv kv = Oracles.open(cal);
        // A prefill of 11 tokens, then single-token decode steps.
        Fixtures.fill(kv, new float[][][] {slice(seq[0], 0, 11, c), slice(seq[1], 0, 11, c)}, 11, 11);
        for (int t = 11; t < tokens; t++) {
            for (int l = 0; l < GEO.layers(); l++) {
                kv.append(l, slice1(seq[0][l], t, c), slice1(seq[1][l], t, c), 1, t);
            }
        }
        // Which tokens ended up compressed: after the prefix, whole buffers of >= buffer tokens.
        int compressed = 0, pending = 0;
        int afterPrefill = Math.max(0, 11 - cfg.prefix());
        pending = afterPrefill;
        if (pending >= cfg.buffer()) {
            compressed += pending;
            pending = 0;
        }
        for (int t = Math.max(11, cfg.prefix()); t < tokens; t++) {
            pending++;
            if (pending >= cfg.buffer()) {
                compressed += pending;
                pending = 0;
            }
        }
        float[] k = new float[tokens * c], v = new float[tokens * c];
        float[] expectK = null, expectV = null;
        for (int l = 0; l < GEO.layers(); l++) {
            kv.reconstruct(l, k, v);
            // Chain the calibration's own predictors and quantizers over the compressed tokens, chunk by chunk.
            float[][] expected = expectedChunks(cal, seq, l, cfg.prefix(), compressed, expectK, expectV);
            expectK = expected[0];
            expectV = expected[1];
            for (int t = 0; t < tokens; t++) {
                for (int i = 0; i < c; i++) {
                    int o = t * c + i;
                    int idx = t - cfg.prefix();
                    if (t < cfg.prefix() || idx >= compressed) {
                        assertThat(k[o]).isEqualTo(Half.round(seq[0][l][o]));
                        assertThat(v[o]).isEqualTo(Half.round(seq[1][l][o]));
                    } else {
                        assertThat((double) k[o]).isCloseTo(expectK[idx * c + i], offset(1e-4));
                        assertThat((double) v[o]).isCloseTo(expectV[idx * c + i], offset(1e-4));
                    }
                }
            }
            int rows = 3, pos0 = tokens - rows;
            float[] q = Fixtures.randomQueries(GEO, rows, l);
            float[] out = new float[q.length];
            kv.attend(l, q, rows, pos0, out);
            assertThat(Fixtures.maxAbsDiff(out, Fixtures.referenceAttention(GEO, k, v, tokens, q, rows, pos0))).isLessThan(2e-5);
        }
        long fp16Tokens = tokens - compressed;
        long expectedBytes = fp16Tokens * cal.fp16BytesPerToken() + compressed * cal.bytesPerToken();
        assertThat(kv.bytesHeld()).isEqualTo(expectedBytes);
        assertThat(compressed).isPositive();
    }

    /**
     * Reconstruction of the compressed tokens of layer l, given that of layer l-1 (rows are independent;
     * the cache compresses its buffer, which holds binary16 copies of the tokens).
     */
    private static float[][] expectedChunks(AquaCalibration cal, float[][][] seq, int l, int prefix, int n, float[] prevK, float[] prevV) {
        int c = GEO.kvDim();
        float[] k = new float[n * c], v = new float[n * c];
        float[] predK = l == 0 ? new float[n * c] : cal.predictKeys(l, prevK, n);
        HiggsQuantizer q = cal.quantizer(l);
        float[] res = new float[c], back = new float[c];
        for (int t = 0; t < n; t++) {
            int o = (prefix + t) * c;
            for (int i = 0; i < c; i++) res[i] = Half.round(seq[0][l][o + i]) - predK[t * c + i];
            if (q == null) for (int i = 0; i < c; i++) back[i] = Half.round(res[i]);
            else q.roundTrip(res, 0, back, 0);
            for (int i = 0; i < c; i++) k[t * c + i] = predK[t * c + i] + back[i];
        }
        float[] predV = l == 0 ? new float[n * c] : cal.predictValues(l, k, prevV, n);
        for (int t = 0; t < n; t++) {
            int o = (prefix + t) * c;
            for (int i = 0; i < c; i++) res[i] = Half.round(seq[1][l][o + i]) - predV[t * c + i];
            if (q == null) for (int i = 0; i < c; i++) back[i] = Half.round(res[i]);
            else q.roundTrip(res, 0, back, 0);
            for (int i = 0; i < c; i++) v[t * c + i] = predV[t * c + i] + back[i];
        }
        return new float[][] {k, v};
    }

    private static float[][] slice(float[][] a, int from, int to, int c) {
        float[][] out = new float[a.length][];
        for (int l = 0; l < a.length; l++) out[l] = java.util.Arrays.copyOfRange(a[l], from * c, to * c);
        return out;
    }

    private static float[] slice1(float[] a, int t, int c) {
        return java.util.Arrays.copyOfRange(a, t * c, (t + 1) * c);
    }

    @Test
    void outOfOrderReadsRebuildTheLayerChain() {
        AquaCalibration cal = (AquaCalibration) Calibrator.fit("aqua", "bits=2,buffer=4,prefix=1", SAMPLES, null);
        int tokens = 21, c = GEO.kvDim();
        float[][][] seq = Fixtures.sequence(GEO, tokens, 41, false);
        CompressedKv inOrder = Oracles.open(cal), outOfOrder = Oracles.open(cal);
        Fixtures.fill(inOrder, seq, tokens, 3);
        Fixtures.fill(outOfOrder, seq, tokens, 3);
        float[] a = new float[tokens * c], b = new float[tokens * c], va = new float[tokens * c], vb = new float[tokens * c];
        inOrder.reconstruct(0, a, va);
        inOrder.reconstruct(1, a, va);
        inOrder.reconstruct(2, a, va);
        outOfOrder.reconstruct(2, b, vb);
        assertThat(b).containsExactly(a);
        assertThat(vb).containsExactly(va);
    }

    @Test
    void predictionPlusResidualBeatsResidualQuantizationAlone() {
        // The point of AQUA-KV: with predictors, the 2-bit error on layers >= 1 is below plain 2-bit HIGGS.
        AquaCalibration cal = (AquaCalibration) Calibrator.fit("aqua", "bits=2,buffer=1,prefix=0", SAMPLES, null);
        int tokens = 60, c = GEO.kvDim();
        float[][][] seq = Fixtures.sequence(GEO, tokens, 51, false);
        CompressedKv kv = Oracles.open(cal);
        Fixtures.fill(kv, seq, tokens, tokens);
        float[] k = new float[tokens * c], v = new float[tokens * c], plain = new float[c];
        double withPred = 0, without = 0;
        for (int l = 1; l < GEO.layers(); l++) {
            kv.reconstruct(l, k, v);
            for (int t = 0; t < tokens; t++) {
                cal.quantizer(l).roundTrip(seq[0][l], t * c, plain, 0);
                for (int i = 0; i < c; i++) {
                    withPred += Math.pow(k[t * c + i] - seq[0][l][t * c + i], 2);
                    without += Math.pow(plain[i] - seq[0][l][t * c + i], 2);
                }
            }
        }
        assertThat(withPred).isLessThan(without);
    }

    @Test
    void refusesBadSettings() {
        assertThatThrownBy(() -> AquaConfig.parse("bits=5")).hasMessageContaining("bits·dim must be in 1..8");
        assertThatThrownBy(() -> AquaConfig.parse("first=lots")).hasMessageContaining("fp16 or a bit count");
        assertThatThrownBy(() -> AquaConfig.parse("first=5")).hasMessageContaining("fp16 or 1..4 bits");
        assertThatThrownBy(() -> AquaConfig.parse("group=12")).hasMessageContaining("power of two");
    }
}
