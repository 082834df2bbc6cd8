package dev.kvserve.kvcache.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.data.Offset.offset;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.RopeTable;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class CqTest {

    private static final KvGeometry GEO = Fixtures.geometry();
    private static final KvSamples SAMPLES = Fixtures.samples(GEO, 3, 96, 200, true);

    @Test
    void learnsKnownCentroidsOfClusteredChannelGroups() {
        // c=2, bits=2: 16 centroids per group; the data are 16 well-separated 2-D points per group plus noise.
        KvGeometry g = Fixtures.geometry(1, 2, 2, 4);
        Random r = new Random(21);
        int groups = g.kvDim() / 2, tokens = 1600;
        float[][] truth = new float[groups][32];
        for (int gr = 0; gr < groups; gr++) {
            for (int j = 0; j < 16; j++) {
                truth[gr][2 * j] = (j % 4) * 2 - 3 + gr;
                truth[gr][2 * j + 1] = (j / 4) * 2 - 3 - gr;
            }
        }
        float[][] keys = {new float[tokens * g.kvDim()]}, values = {new float[tokens * g.kvDim()]};
        for (int t = 0; t < tokens; t++) {
            for (int gr = 0; gr < groups; gr++) {
                int j = r.nextInt(16);
                for (int i = 0; i < 2; i++) {
                    keys[0][t * g.kvDim() + gr * 2 + i] = truth[gr][2 * j + i] + (float) (0.01 * r.nextGaussian());
                    values[0][t * g.kvDim() + gr * 2 + i] = truth[gr][2 * j + i] * -0.5f + (float) (0.01 * r.nextGaussian());
                }
            }
        }
        KvSamples s = KvSamples.builder(g).addSequence(keys, values, null, null).build();
        CqCalibration cal = CqCalibration.fit(CqConfig.parse("c=2,bits=2,fisher=false"), s, CalibrationProgress.NONE);
        for (int gr = 0; gr < groups; gr++) {
            for (int j = 0; j < 16; j++) {
                float[] learned = null;
                double best = Double.POSITIVE_INFINITY;
                for (int m = 0; m < 16; m++) {
                    float[] cand = cal.keyCentroid(0, gr, m);
                    double d = Math.hypot(cand[0] - truth[gr][2 * j], cand[1] - truth[gr][2 * j + 1]);
                    if (d < best) {
                        best = d;
                        learned = cand;
                    }
                }
                assertThat(best).as("true centroid %d of group %d", j, gr).isLessThan(0.01);
            }
        }
        // Encoding a true centroid returns the learned centroid at that place.
        CompressedKv kv = Oracles.open(cal);
        kv.append(0, keys[0], values[0], 4, 0);
        float[] k = new float[4 * g.kvDim()], v = new float[4 * g.kvDim()];
        kv.reconstruct(0, k, v);
        for (int i = 0; i < k.length; i++) {
            assertThat((double) k[i]).isCloseTo(keys[0][i], offset(0.05));
            assertThat((double) v[i]).isCloseTo(values[0][i], offset(0.05));
        }
    }

    @Test
    void encodeChoosesTheNearestCentroid() {
        CqCalibration cal = CqCalibration.fit(CqConfig.parse("c=4,bits=2"), SAMPLES, CalibrationProgress.NONE);
        float[][][] seq = Fixtures.sequence(GEO, 10, 4, false);
        CompressedKv kv = Oracles.open(cal);
        Fixtures.fill(kv, seq, 10, 10);
        int c = GEO.kvDim();
        float[] k = new float[10 * c], v = new float[10 * c];
        kv.reconstruct(1, k, v);
        for (int t = 0; t < 10; t++) {
            for (int g = 0; g < cal.groups(); g++) {
                double got = dist(seq[0][1], t * c + g * 4, k, t * c + g * 4);
                for (int j = 0; j < 256; j++) {
                    float[] cent = cal.keyCentroid(1, g, j);
                    assertThat(got).isLessThanOrEqualTo(dist(seq[0][1], t * c + g * 4, cent, 0) + 1e-4);
                }
            }
        }
    }

    private static double dist(float[] a, int ao, float[] b, int bo) {
        double s = 0;
        for (int i = 0; i < 4; i++) s += Math.pow(a[ao + i] - b[bo + i], 2);
        return s;
    }

    @ParameterizedTest
    @CsvSource({"c=4,bits=2,rope=pre,sinks=1,window=0", "c=4,bits=2,rope=post,sinks=1,window=5",
            "c=8,bits=1,rope=post,sinks=0,window=0", "c=8,bits=1,rope=pre,sinks=2,window=3", "c=2,bits=3,rope=post,sinks=0,window=0"})
    void attentionOverCodesEqualsAttentionOverTheReconstruction(String c, String bits, String rope, String sinks, String window) {
        String spec = String.join(",", c, bits, rope, sinks, window);
        CqCalibration cal = (CqCalibration) Calibrator.fit("cq", spec, SAMPLES, null);
        int tokens = 30, kvDim = GEO.kvDim();
        float[][][] seq = Fixtures.sequence(GEO, tokens, 12, true);
        CompressedKv kv = Oracles.open(cal);
        Fixtures.fill(kv, seq, tokens, 4);
        int rows = 4, pos0 = tokens - rows;
        float[] q = Fixtures.randomQueries(GEO, rows, 5);
        float[] k = new float[tokens * kvDim], v = new float[tokens * kvDim];
        int nSinks = cal.config().sinks(), nWindow = cal.config().window();
        for (int l = 0; l < GEO.layers(); l++) {
            float[] out = new float[q.length];
            kv.attend(l, q, rows, pos0, out);
            kv.reconstruct(l, k, v);
            assertThat(Fixtures.maxAbsDiff(out, Fixtures.referenceAttention(GEO, k, v, tokens, q, rows, pos0))).isLessThan(2e-5);
            for (int t = 0; t < tokens; t++) {
                boolean fp16 = t < nSinks || t >= tokens - nWindow;
                for (int i = 0; i < kvDim; i++) {
                    if (fp16) {
                        assertThat(k[t * kvDim + i]).isEqualTo(Half.round(seq[0][l][t * kvDim + i]));
                        assertThat(v[t * kvDim + i]).isEqualTo(Half.round(seq[1][l][t * kvDim + i]));
                    }
                }
            }
        }
        long coded = tokens - Math.min(tokens, nSinks + nWindow);
        assertThat(kv.bytesHeld()).isEqualTo(coded * cal.bytesPerToken() + (tokens - coded) * cal.fp16BytesPerToken());
        assertThat(cal.bytesPerToken()).isEqualTo(2L * GEO.layers() * BitPacking.bytesFor(kvDim / cal.config().channels(), cal.config().codeBits()));
    }

    @Test
    void postRopeKeysAreCodedAfterRotation() {
        CqCalibration cal = (CqCalibration) Calibrator.fit("cq", "c=2,bits=4,rope=post", SAMPLES, null);
        float[][][] seq = Fixtures.sequence(GEO, 20, 3, false);
        CompressedKv kv = Oracles.open(cal);
        Fixtures.fill(kv, seq, 20, 20);
        int c = GEO.kvDim();
        float[] k = new float[20 * c], v = new float[20 * c];
        kv.reconstruct(0, k, v);
        RopeTable rope = new RopeTable(GEO.rope(), GEO.headDim());
        // The stored centroid is the nearest one to the rotated key: rotating the reconstruction back
        // to its position gives a point no farther from the rotated key than any centroid.
        for (int t = 0; t < 20; t++) {
            float[] rotated = java.util.Arrays.copyOfRange(seq[0][0], t * c, (t + 1) * c);
            float[] rec = java.util.Arrays.copyOfRange(k, t * c, (t + 1) * c);
            for (int h = 0; h < GEO.kvHeads(); h++) {
                rope.rotate(rotated, h * GEO.headDim(), t);
                rope.rotate(rec, h * GEO.headDim(), t);
            }
            for (int g = 0; g < cal.groups(); g++) {
                double got = Math.hypot(rotated[2 * g] - rec[2 * g], rotated[2 * g + 1] - rec[2 * g + 1]);
                for (int j = 0; j < 256; j++) {
                    float[] cent = cal.keyCentroid(0, g, j);
                    assertThat(got).isLessThanOrEqualTo(Math.hypot(rotated[2 * g] - cent[0], rotated[2 * g + 1] - cent[1]) + 1e-3);
                }
            }
        }
    }

    @Test
    void fisherGuidedCentroidsLowerTheFisherWeightedError() {
        CqCalibration plain = (CqCalibration) Calibrator.fit("cq", "c=4,bits=1,fisher=false", SAMPLES, null);
        CqCalibration fisher = (CqCalibration) Calibrator.fit("cq", "c=4,bits=1,fisher=true", SAMPLES, null);
        assertThat(weightedError(fisher)).isLessThan(weightedError(plain));
    }

    /** Σ F·(k − k̂)² over the calibration keys: what Fisher-guided centroids minimise. */
    private static double weightedError(CqCalibration cal) {
        int c = GEO.kvDim();
        CompressedKv kv = Oracles.open(cal);
        int n = SAMPLES.rows();
        float[] k = new float[n * c], v = new float[n * c];
        double err = 0;
        for (int l = 0; l < GEO.layers(); l++) {
            // Rows are independent under CQ, so all calibration rows can go into one sequence.
            kv.append(l, SAMPLES.keys(l), SAMPLES.values(l), n, 0);
            kv.reconstruct(l, k, v);
            float[] f = SAMPLES.keyFisher(l);
            for (int i = 0; i < k.length; i++) err += f[i] * Math.pow(k[i] - SAMPLES.keys(l)[i], 2);
        }
        return err;
    }

    @Test
    void refusesGroupsThatSpanHeads() {
        KvGeometry g = Fixtures.geometry(1, 2, 2, 6);
        KvSamples s = Fixtures.samples(g, 1, 8, 1, false);
        assertThatThrownBy(() -> Calibrator.fit("cq", "c=4,bits=2,fisher=false", s, null)).hasMessageContaining("must divide the head size 6");
        assertThatThrownBy(() -> CqConfig.parse("c=8,bits=2")).hasMessageContaining("c·bits must be in 1..12");
    }
}
