package dev.kvserve.runtime.grad;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.data.Offset.offset;

import dev.kvserve.kernels.GgmlQuantize;
import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kernels.WeightTensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class LlamaBackpropTest {

    /** dim 16, 4 query heads, 2 KV heads of 4, 2 layers, FFN 24, vocabulary 11. */
    static GradConfig tinyConfig(boolean neox) {
        return new GradConfig(16, 4, 2, 4, 2, 24, 11, 1e-5f, new RopeConfig(4, 10000f, 1f, neox), 64);
    }

    static Map<String, WeightTensor> tinyWeights(GradConfig c, long seed, boolean bias, boolean tied, GgmlType type) {
        Random r = new Random(seed);
        Map<String, WeightTensor> m = new LinkedHashMap<>();
        int dim = c.dim();
        put(m, "token_embd.weight", dim, c.vocab(), r, 1.0, 0, type);
        put(m, "output_norm.weight", dim, 1, r, 0.1, 1, GgmlType.F32);
        if (!tied) put(m, "output.weight", dim, c.vocab(), r, 0.4, 0, type);
        for (int l = 0; l < c.layers(); l++) {
            String p = "blk." + l + ".";
            put(m, p + "attn_norm.weight", dim, 1, r, 0.1, 1, GgmlType.F32);
            put(m, p + "attn_q.weight", dim, c.qDim(), r, 0.5, 0, type);
            put(m, p + "attn_k.weight", dim, c.kvDim(), r, 0.5, 0, type);
            put(m, p + "attn_v.weight", dim, c.kvDim(), r, 0.5, 0, type);
            if (bias) {
                put(m, p + "attn_q.bias", c.qDim(), 1, r, 0.2, 0, GgmlType.F32);
                put(m, p + "attn_k.bias", c.kvDim(), 1, r, 0.2, 0, GgmlType.F32);
                put(m, p + "attn_v.bias", c.kvDim(), 1, r, 0.2, 0, GgmlType.F32);
            }
            put(m, p + "attn_output.weight", c.qDim(), dim, r, 0.4, 0, type);
            put(m, p + "ffn_norm.weight", dim, 1, r, 0.1, 1, GgmlType.F32);
            put(m, p + "ffn_gate.weight", dim, c.ffn(), r, 0.4, 0, type);
            put(m, p + "ffn_up.weight", dim, c.ffn(), r, 0.4, 0, type);
            put(m, p + "ffn_down.weight", c.ffn(), dim, r, 0.3, 0, type);
        }
        return m;
    }

    private static void put(Map<String, WeightTensor> m, String name, int cols, int rows, Random r, double std, double mean, GgmlType type) {
        float[] v = new float[cols * rows];
        for (int i = 0; i < v.length; i++) v[i] = (float) (mean + std * r.nextGaussian());
        MemorySegment seg;
        if (type == GgmlType.F32) {
            seg = Arena.ofAuto().allocate(4L * v.length);
            MemorySegment.copy(v, 0, seg, ValueLayout.JAVA_FLOAT_UNALIGNED, 0, v.length);
        } else {
            seg = GgmlQuantize.quantize(type, v, cols, Arena.ofAuto());
        }
        m.put(name, new WeightTensor(name, type, new long[] {cols, rows}, seg));
    }

    @ParameterizedTest(name = "neox={0} bias={1} tied={2}")
    @CsvSource({"false, false, false", "true, true, false", "false, true, true"})
    void keyAndValueGradientsMatchFiniteDifferences(boolean neox, boolean bias, boolean tied) {
        GradConfig c = tinyConfig(neox);
        Map<String, WeightTensor> w = tinyWeights(c, neox ? 5 : 6, bias, tied, GgmlType.F32);
        int[] tokens = {1, 7, 3, 3, 10, 0, 5};
        LlamaBackprop model = new LlamaBackprop(c, w);
        LlamaBackprop.Result r = model.forwardBackward(tokens);
        DoubleOracle oracle = new DoubleOracle(c, w);
        assertThat(r.loss()).isCloseTo(oracle.loss(tokens, 0, 0, 0, true, 0), offset(1e-5));
        assertThat(r.predictions()).isEqualTo(tokens.length - 1);
        double h = 1e-5;
        double worstRel = 0;
        for (int l = 0; l < c.layers(); l++) {
            double scaleK = 0, scaleV = 0;
            double[] fdK = new double[tokens.length * c.kvDim()], fdV = new double[fdK.length];
            for (int t = 0; t < tokens.length; t++) {
                for (int i = 0; i < c.kvDim(); i++) {
                    int o = t * c.kvDim() + i;
                    fdK[o] = (oracle.loss(tokens, l, t, i, true, h) - oracle.loss(tokens, l, t, i, true, -h)) / (2 * h);
                    fdV[o] = (oracle.loss(tokens, l, t, i, false, h) - oracle.loss(tokens, l, t, i, false, -h)) / (2 * h);
                    scaleK = Math.max(scaleK, Math.abs(fdK[o]));
                    scaleV = Math.max(scaleV, Math.abs(fdV[o]));
                }
            }
            assertThat(scaleK).isPositive();
            for (int o = 0; o < fdK.length; o++) {
                assertThat((double) r.keyGrads()[l][o]).as("dK layer %d elem %d", l, o).isCloseTo(fdK[o], offset(1e-3 * scaleK + 1e-7));
                assertThat((double) r.valueGrads()[l][o]).as("dV layer %d elem %d", l, o).isCloseTo(fdV[o], offset(1e-3 * scaleV + 1e-7));
                worstRel = Math.max(worstRel, Math.abs(r.keyGrads()[l][o] - fdK[o]) / scaleK);
            }
        }
        // The last token's key only meets its own query, whose output predicts nothing: no gradient.
        int last = (tokens.length - 1) * c.kvDim();
        for (int i = 0; i < c.kvDim(); i++) assertThat(r.keyGrads()[c.layers() - 1][last + i]).isZero();
        assertThat(worstRel).isLessThan(1e-3);
    }

    @Test
    void forwardKeysAreThePreRopeProjections() {
        GradConfig c = tinyConfig(false);
        Map<String, WeightTensor> w = tinyWeights(c, 9, false, false, GgmlType.F32);
        int[] tokens = {2, 4, 6};
        LlamaBackprop.Result r = new LlamaBackprop(c, w).forward(tokens);
        assertThat(r.keyGrads()).isNull();
        // Layer 0: K = Wk · rmsnorm(embedding) (no rotation applied).
        float[] emb = new float[c.dim()];
        MemorySegment.copy(w.get("token_embd.weight").data(), ValueLayout.JAVA_FLOAT_UNALIGNED, 4L * tokens[2] * c.dim(), emb, 0, c.dim());
        float[] norm = new float[c.dim()];
        MemorySegment.copy(w.get("blk.0.attn_norm.weight").data(), ValueLayout.JAVA_FLOAT_UNALIGNED, 0, norm, 0, c.dim());
        double ss = 0;
        for (float e : emb) ss += e * e;
        double rr = 1 / Math.sqrt(ss / c.dim() + c.eps());
        for (int k = 0; k < c.kvDim(); k++) {
            double acc = 0;
            for (int i = 0; i < c.dim(); i++) {
                float wk = w.get("blk.0.attn_k.weight").data().getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, (long) k * c.dim() + i);
                acc += wk * emb[i] * rr * norm[i];
            }
            assertThat((double) r.keys()[0][2 * c.kvDim() + k]).isCloseTo(acc, offset(1e-5));
        }
    }

    @Test
    void quantizedWeightsAreDequantizedOnce() {
        // Q8_0 blocks are 32 wide: a config whose every row length is a multiple of 32.
        GradConfig c = new GradConfig(32, 4, 2, 8, 1, 64, 9, 1e-5f, new RopeConfig(8, 10000f, 1f, false), 32);
        Map<String, WeightTensor> q8 = tinyWeights(c, 3, false, false, GgmlType.Q8_0);
        int[] tokens = {1, 2, 3, 4, 5};
        double viaModel = new LlamaBackprop(c, q8).forward(tokens).loss();
        double viaOracle = new DoubleOracle(c, q8).loss(tokens, 0, 0, 0, true, 0);
        assertThat(viaModel).isCloseTo(viaOracle, offset(1e-5));
    }

    @Test
    void refusesBadInput() {
        GradConfig c = tinyConfig(false);
        Map<String, WeightTensor> w = tinyWeights(c, 1, false, false, GgmlType.F32);
        LlamaBackprop model = new LlamaBackprop(c, w);
        assertThatThrownBy(() -> model.forward(new int[] {1})).hasMessageContaining("at least two tokens");
        assertThatThrownBy(() -> model.forward(new int[] {1, 11})).hasMessageContaining("token id 11");
        Map<String, WeightTensor> missing = new LinkedHashMap<>(w);
        missing.remove("blk.1.ffn_up.weight");
        assertThatThrownBy(() -> new LlamaBackprop(c, missing)).hasMessageContaining("blk.1.ffn_up.weight");
        GradConfig wrong = new GradConfig(16, 4, 2, 4, 2, 20, 11, 1e-5f, c.rope(), 64);
        assertThatThrownBy(() -> new LlamaBackprop(wrong, w)).hasMessageContaining("ffn_gate.weight has shape [16, 24]");
    }
}
