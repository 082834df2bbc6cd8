package dev.kvserve.kvcache;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kvserve.kernels.RopeConfig;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Element-wise error bounds of the uniform quantizers, read back through the cache: a value is off by
 * at most half a quantization step of its group, where the step is (max - min) / (2^bits - 1) of the
 * group it was quantized in (per token and channel group for int8/int4/int3 and KIVI values, per channel
 * and token group for KIVI keys), plus fp16 rounding of the stored scale and minimum.
 */
class QuantizationBoundTest {

    static final KvGeometry G = new KvGeometry(2, 4, 2, 16, 4096, new RopeConfig(16, 10000f, 1f, false));

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "int8 | 8 | 16 | 0 | 0", "int8:group=4 | 8 | 4 | 0 | 0", "int4 | 4 | 16 | 0 | 0", "int4:group=8 | 4 | 8 | 0 | 0",
            "int3 | 3 | 16 | 0 | 0", "int3:group=8 | 3 | 8 | 0 | 0",
            "kivi:bits=2,group=8,residual=16 | 2 | 8 | 8 | 16", "kivi:bits=4,group=16,residual=0 | 4 | 16 | 16 | 0",
            "kivi:bits=2,group=32,residual=4 | 2 | 16 | 16 | 4"})
    void everyElementIsWithinHalfAStepOfItsGroup(String spec, int bits, int valueGroup, int keyTokenGroup, int residual) {
        Random rnd = new Random(spec.hashCode());
        int tokens = 70, d = G.headDim(), kvDim = G.kvDim();
        try (KvCacheManager m = new KvCacheManager(G, 16 << 20, 16)) {
            PagedSequence s = m.open(spec);
            float[][] pre = new float[G.layers()][tokens * kvDim];
            float[][] post = new float[G.layers()][];
            float[][] vals = new float[G.layers()][tokens * kvDim];
            for (int l = 0; l < G.layers(); l++) {
                for (int i = 0; i < tokens * kvDim; i++) {
                    // a few large channels, as real keys have
                    pre[l][i] = (float) (rnd.nextGaussian() * (i % d == 3 ? 8 : 1));
                    vals[l][i] = (float) (rnd.nextGaussian() + (i % 5 == 0 ? 2 : 0));
                }
                post[l] = pre[l].clone();
                for (int t = 0; t < tokens; t++) for (int h = 0; h < G.kvHeads(); h++) m.rope().rotate(post[l], t * kvDim + h * d, t);
            }
            // prompt of 50, then 20 single tokens
            int done = 0;
            while (done < tokens) {
                int n = done == 0 ? 50 : 1;
                for (int l = 0; l < G.layers(); l++) {
                    float[] a = java.util.Arrays.copyOfRange(pre[l], done * kvDim, (done + n) * kvDim);
                    float[] b = java.util.Arrays.copyOfRange(post[l], done * kvDim, (done + n) * kvDim);
                    float[] c = java.util.Arrays.copyOfRange(vals[l], done * kvDim, (done + n) * kvDim);
                    s.append(new KvRows(l, n, done, G.kvHeads(), d, a, b, c));
                }
                s.advance(n);
                done += n;
            }
            int levels = (1 << bits) - 1;
            float[] k = new float[d], v = new float[d];
            int quantizedSlots = 0;
            for (int l = 0; l < G.layers(); l++) {
                LayerKv kv = s.layer(l);
                for (int h = 0; h < G.kvHeads(); h++) {
                    for (int slot = 0; slot < kv.slots(h); slot++) {
                        int p = kv.position(h, slot);
                        kv.readKey(h, slot, k, 0);
                        kv.readValue(h, slot, v, 0);
                        int base = p * kvDim + h * d;
                        boolean fp16Window = keyTokenGroup > 0 && s.table(l, h).block(slot / 16).codec().name().equals("fp16");
                        if (fp16Window) {
                            // KIVI's recent window: fp16, and it must cover at least the newest `residual` tokens
                            for (int c = 0; c < d; c++) assertThat(Math.abs(k[c] - post[l][base + c])).isLessThanOrEqualTo(Math.abs(post[l][base + c]) * 1e-3f);
                            continue;
                        }
                        assertThat(p).isLessThanOrEqualTo(tokens - 1 - residual);
                        quantizedSlots++;
                        for (int c = 0; c < d; c++) {
                            double kStep;
                            if (keyTokenGroup == 0) {
                                kStep = range(post[l], base + (c / valueGroup) * valueGroup, 1, valueGroup) / levels;
                            } else {
                                int first = (p / keyTokenGroup) * keyTokenGroup;
                                kStep = range(post[l], first * kvDim + h * d + c, kvDim, keyTokenGroup) / levels;
                            }
                            double vStep = range(vals[l], base + (c / valueGroup) * valueGroup, 1, valueGroup) / levels;
                            assertThat((double) Math.abs(k[c] - post[l][base + c])).as("key %d/%d/%d/%d", l, h, p, c)
                                    .isLessThanOrEqualTo(0.5 * kStep * 1.002 + 2e-3 * Math.abs(post[l][base + c]) + 1e-3 * kStep + 1e-6);
                            assertThat((double) Math.abs(v[c] - vals[l][base + c])).as("value %d/%d/%d/%d", l, h, p, c)
                                    .isLessThanOrEqualTo(0.5 * vStep * 1.002 + 2e-3 * Math.abs(vals[l][base + c]) + 1e-3 * vStep + 1e-6);
                        }
                    }
                }
            }
            assertThat(quantizedSlots).isGreaterThan(G.layers() * G.kvHeads() * (tokens - residual - 16));
        }
    }

    private static double range(float[] x, int off, int stride, int n) {
        double lo = Double.POSITIVE_INFINITY, hi = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            lo = Math.min(lo, x[off + i * stride]);
            hi = Math.max(hi, x[off + i * stride]);
        }
        return hi - lo;
    }
}
