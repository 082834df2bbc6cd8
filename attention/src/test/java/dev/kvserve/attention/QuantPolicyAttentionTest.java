package dev.kvserve.attention;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.kvcache.quant.CalibrationFile;
import dev.kvserve.kvcache.quant.Calibrator;
import dev.kvserve.kvcache.quant.KvSamples;
import dev.kvserve.kvcache.quant.ModelIdentity;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The calibrated formats (kvquant, cq, aqua) through the attention seam: {@link PagedAttention} over
 * their codes equals dense attention over what the cache decodes, for batched prefill and decode steps
 * on two threads, and its mean relative distance from attention over the unquantized keys and values
 * stays within a bound per setting (the data are i.i.d. Gaussian channels, the hard case for coupled
 * and predictive methods, whose gains come from structure real activations have).
 */
class QuantPolicyAttentionTest {

    private static final KvGeometry GEO = new KvGeometry(3, 4, 2, 8, 1024, new RopeConfig(8, 10000f, 1f, false));

    @TempDir
    Path dir;

    /** Keys with per-channel offsets and scales, values with per-token scales, as the samples. */
    private static final class Source {
        final Random r;
        final float[][] offset = new float[GEO.layers()][GEO.kvDim()];
        final float[][] scale = new float[GEO.layers()][GEO.kvDim()];

        Source(long seed) {
            Random shape = new Random(99);
            for (int l = 0; l < GEO.layers(); l++) {
                for (int c = 0; c < GEO.kvDim(); c++) {
                    offset[l][c] = (float) (shape.nextDouble() * 2 - 1);
                    scale[l][c] = (float) (0.3 + shape.nextDouble() * 2);
                }
            }
            r = new Random(seed);
        }

        float[] keys(int layer, int tokens) {
            float[] k = new float[tokens * GEO.kvDim()];
            for (int i = 0; i < k.length; i++) {
                int c = i % GEO.kvDim();
                k[i] = offset[layer][c] + scale[layer][c] * (float) r.nextGaussian();
            }
            return k;
        }

        float[] values(int tokens) {
            float[] v = new float[tokens * GEO.kvDim()];
            for (int t = 0; t < tokens; t++) {
                float s = (float) (0.5 + r.nextDouble());
                for (int c = 0; c < GEO.kvDim(); c++) v[t * GEO.kvDim() + c] = s * (float) r.nextGaussian();
            }
            return v;
        }
    }

    private String calibrationFile(String method, String params) throws Exception {
        Source src = new Source(1);
        KvSamples.Builder b = KvSamples.builder(GEO);
        for (int s = 0; s < 3; s++) {
            int n = 80;
            float[][] k = new float[GEO.layers()][], v = new float[GEO.layers()][], kg = new float[GEO.layers()][], vg = new float[GEO.layers()][];
            for (int l = 0; l < GEO.layers(); l++) {
                k[l] = src.keys(l, n);
                v[l] = src.values(n);
                kg[l] = src.values(n);
                vg[l] = src.values(n);
            }
            b.addSequence(k, v, kg, vg);
        }
        Path file = dir.resolve(method + ".kvq");
        WeightTensor t = new WeightTensor(ModelIdentity.DEFAULT_HASHED_TENSOR, GgmlType.F32, new long[] {4, 1}, Arena.ofAuto().allocate(16));
        CalibrationFile.write(file, ModelIdentity.of("llama", GEO, t), Calibrator.fit(method, params, b.build(), null));
        return file.toString();
    }

    @ParameterizedTest(name = "{0}:{1} + {2}")
    @CsvSource(delimiter = '|', value = {
            "kvquant|bits=4||0.15",
            "kvquant|bits=2,qnorm=true,sinks=2||0.55",
            "cq|c=4,bits=2||0.8",
            "cq|c=2,bits=3,rope=post,sinks=1|,window=12|0.2",
            "cq|c=8,bits=1,rope=post||1.0",
            "aqua|bits=2,prefix=2,buffer=8||0.25",
            "aqua|bits=3,first=fp16,prefix=0,buffer=4|,buffer=6|0.2",
    })
    void attentionOverCodesEqualsDenseAttentionOverTheDecodedCache(String method, String params, String extra, double maxLossy) throws Exception {
        String spec = method + ":calib=" + calibrationFile(method, params) + (extra == null ? "" : extra);
        Source src = new Source(2);
        int heads = GEO.heads(), d = GEO.headDim(), kvDim = GEO.kvDim();
        try (KvCacheManager m = new KvCacheManager(GEO, 64L << 20, 8);
             PagedAttention attention = new PagedAttention(GEO, m.rope(), 2);
             Arena arena = Arena.ofConfined()) {
            List<PagedSequence> seqs = List.of(m.open(spec), m.open(spec));
            float[][][] keys = new float[2][GEO.layers()][0], values = new float[2][GEO.layers()][0];
            double worstExact = 0, lossySum = 0;
            int lossyCount = 0;
            // A prefill of 19 and 7 tokens, then 14 single-token decode steps for both.
            List<int[]> steps = new ArrayList<>();
            steps.add(new int[] {19, 7});
            for (int i = 0; i < 14; i++) steps.add(new int[] {1, 1});
            for (int[] tokens : steps) {
                int rows = tokens[0] + tokens[1];
                int[] starts = {seqs.get(0).length(), seqs.get(1).length()};
                StepBatch batch = new StepBatch(List.of(
                        new StepBatch.Entry(seqs.get(0), 0, tokens[0], starts[0]),
                        new StepBatch.Entry(seqs.get(1), tokens[0], tokens[1], starts[1])));
                MemorySegment q = arena.allocate(4L * rows * heads * d), k = arena.allocate(4L * rows * kvDim),
                        v = arena.allocate(4L * rows * kvDim), out = arena.allocate(4L * rows * heads * d);
                for (int l = 0; l < GEO.layers(); l++) {
                    float[] qa = new float[rows * heads * d];
                    for (int i = 0; i < qa.length; i++) qa[i] = (float) src.r.nextGaussian();
                    for (int s = 0; s < 2; s++) {
                        int first = s == 0 ? 0 : tokens[0];
                        for (int r = 0; r < tokens[s]; r++) for (int h = 0; h < heads; h++) m.rope().rotate(qa, ((first + r) * heads + h) * d, starts[s] + r);
                    }
                    float[] ka = src.keys(l, rows), va = src.values(rows);
                    MemorySegment.copy(qa, 0, q, ValueLayout.JAVA_FLOAT, 0, qa.length);
                    MemorySegment.copy(ka, 0, k, ValueLayout.JAVA_FLOAT, 0, ka.length);
                    MemorySegment.copy(va, 0, v, ValueLayout.JAVA_FLOAT, 0, va.length);
                    attention.attend(l, batch, q, k, v, out);
                    float[] got = new float[rows * heads * d];
                    MemorySegment.copy(out, ValueLayout.JAVA_FLOAT, 0, got, 0, got.length);
                    for (int s = 0; s < 2; s++) {
                        int first = s == 0 ? 0 : tokens[0], n = tokens[s], total = starts[s] + n;
                        keys[s][l] = Arrays.copyOf(keys[s][l], total * kvDim);
                        values[s][l] = Arrays.copyOf(values[s][l], total * kvDim);
                        System.arraycopy(ka, first * kvDim, keys[s][l], starts[s] * kvDim, n * kvDim);
                        System.arraycopy(va, first * kvDim, values[s][l], starts[s] * kvDim, n * kvDim);
                        float[] qi = Arrays.copyOfRange(qa, first * heads * d, (first + n) * heads * d);
                        float[] mine = Arrays.copyOfRange(got, first * heads * d, (first + n) * heads * d);
                        float[][] decoded = decoded(seqs.get(s).layer(l), total);
                        float[] exact = ReferenceAttention.attend(GEO, m.rope(), decoded[0], decoded[1], qi, starts[s], n, null, null);
                        float[] lossy = ReferenceAttention.attend(GEO, m.rope(), keys[s][l], values[s][l], qi, starts[s], n, null, null);
                        worstExact = Math.max(worstExact, Harness.maxAbsDiff(mine, exact));
                        lossySum += Harness.relativeError(mine, lossy);
                        lossyCount++;
                    }
                }
                for (int s = 0; s < 2; s++) seqs.get(s).advance(tokens[s]);
            }
            assertThat(worstExact).as("attention over codes vs over the decoded cache").isLessThan(1e-4);
            assertThat(lossySum / lossyCount).as("quantized vs unquantized attention").isLessThan(maxLossy);
            for (PagedSequence s : seqs) {
                assertThat(s.bytesHeld()).isPositive();
                s.close();
            }
            assertThat(m.stats().blocksUsed()).isZero();
        }
    }

    /** The cache's own pre-RoPE keys and values of every position, as its codecs decode them. */
    private static float[][] decoded(LayerKv kv, int tokens) {
        int d = GEO.headDim(), kvDim = GEO.kvDim();
        float[] k = new float[tokens * kvDim], v = new float[tokens * kvDim];
        for (int h = 0; h < GEO.kvHeads(); h++) {
            for (int slot = 0; slot < kv.slots(h); slot++) {
                int p = kv.position(h, slot);
                if (p < 0) continue;
                kv.readKeyPreRope(h, slot, k, p * kvDim + h * d);
                kv.readValue(h, slot, v, p * kvDim + h * d);
            }
        }
        return new float[][] {k, v};
    }
}
