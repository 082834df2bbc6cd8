package dev.kvserve.attention;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.QueryRows;
import dev.kvserve.kvcache.SequenceKv;
import dev.kvserve.kvcache.evict.EvictionPolicy;
import dev.kvserve.kvcache.evict.EvictionState;
import dev.kvserve.kvcache.policy.ComponentKind;
import dev.kvserve.kvcache.policy.MethodDef;
import dev.kvserve.kvcache.policy.ParamSpec;
import dev.kvserve.kvcache.policy.Params;
import dev.kvserve.kvcache.policy.PolicyRegistry;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A sequence whose policy throws inside {@code attend}: in an isolating batch it alone fails (zero
 * output rows, skipped in later layers) and the other sequences' outputs are bit-identical to the
 * same step without it; a plain batch throws.
 */
class FaultIsolationTest {

    static final KvGeometry G = new KvGeometry(3, 4, 2, 8, 4096, new RopeConfig(8, 10000f, 1f, true));

    static {
        if (PolicyRegistry.all().stream().noneMatch(d -> d.name().equals("testthrow"))) {
            PolicyRegistry.register(new MethodDef("testthrow", ComponentKind.EVICTION, "throws before attention of a layer (test)",
                    List.of(ParamSpec.ofInt("layer", 0, 0, 64)), Thrower::new));
        }
    }

    record Thrower(Params params) implements EvictionPolicy {
        @Override
        public EvictionState open(KvGeometry geometry, int blockTokens) {
            int layer = params.getInt("layer");
            return new EvictionState() {
                @Override
                public void beforeAttention(LayerKv kv, QueryRows queries) {
                    if (kv.layer() == layer) throw new IllegalStateException("injected at layer " + layer);
                }

                @Override
                public EvictionState fork() {
                    return this;
                }
            };
        }

        @Override
        public int maxRetainedTokens(int layer, int tokens, int stepTokens) {
            return tokens + stepTokens;
        }
    }

    /** Runs every layer of one step over {@code batch} with the given inputs; outputs per layer. */
    private static float[][] attendAllLayers(Harness h, StepBatch batch, float[][] q, float[][] k, float[][] v) {
        int rows = batch.rows(), heads = G.heads(), d = G.headDim(), kvDim = G.kvDim();
        MemorySegment qs = h.arena.allocate((long) rows * heads * d * 4), ks = h.arena.allocate((long) rows * kvDim * 4);
        MemorySegment vs = h.arena.allocate((long) rows * kvDim * 4), out = h.arena.allocate((long) rows * heads * d * 4);
        float[][] result = new float[G.layers()][rows * heads * d];
        for (int l = 0; l < G.layers(); l++) {
            MemorySegment.copy(q[l], 0, qs, ValueLayout.JAVA_FLOAT, 0, rows * heads * d);
            MemorySegment.copy(k[l], 0, ks, ValueLayout.JAVA_FLOAT, 0, rows * kvDim);
            MemorySegment.copy(v[l], 0, vs, ValueLayout.JAVA_FLOAT, 0, rows * kvDim);
            out.fill((byte) 0x7f);   // stale data, as a reused workspace holds
            h.attention.attend(l, batch, qs, ks, vs, out);
            MemorySegment.copy(out, ValueLayout.JAVA_FLOAT, 0, result[l], 0, result[l].length);
        }
        return result;
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3})
    void aThrowingSequenceFailsAloneAndTheOthersAreUnchanged(int threads) {
        try (Harness h = new Harness(G, 16 << 20, 4, threads, 5)) {
            int good = 20, bad = 7, heads = G.heads(), d = G.headDim(), kvDim = G.kvDim();
            int rows = good + bad;
            float[][] q = new float[G.layers()][], k = new float[G.layers()][], v = new float[G.layers()][];
            for (int l = 0; l < G.layers(); l++) {
                q[l] = h.gaussian(rows * heads * d);
                k[l] = h.gaussian(rows * kvDim);
                v[l] = h.gaussian(rows * kvDim);
            }
            // the faulty sequence first, so that the good one's rows sit behind it
            SequenceKv faulty = h.manager.open("fp32+testthrow:layer=1");
            SequenceKv together = h.manager.open("fp32");
            StepBatch batch = StepBatch.isolating(List.of(new StepBatch.Entry(faulty, 0, bad, 0), new StepBatch.Entry(together, bad, good, 0)));
            float[][] mixed = attendAllLayers(h, batch, q, k, v);

            SequenceKv alone = h.manager.open("fp32");
            float[][] qa = new float[G.layers()][], ka = new float[G.layers()][], va = new float[G.layers()][];
            for (int l = 0; l < G.layers(); l++) {
                qa[l] = java.util.Arrays.copyOfRange(q[l], bad * heads * d, rows * heads * d);
                ka[l] = java.util.Arrays.copyOfRange(k[l], bad * kvDim, rows * kvDim);
                va[l] = java.util.Arrays.copyOfRange(v[l], bad * kvDim, rows * kvDim);
            }
            float[][] reference = attendAllLayers(h, new StepBatch(List.of(new StepBatch.Entry(alone, 0, good, 0))), qa, ka, va);

            assertThat(batch.failed(0)).isTrue();
            assertThat(batch.fault(0)).hasMessage("injected at layer 1");
            assertThat(batch.failed(1)).isFalse();
            for (int l = 0; l < G.layers(); l++) {
                float[] goodRows = java.util.Arrays.copyOfRange(mixed[l], bad * heads * d, rows * heads * d);
                assertThat(goodRows).as("layer %d", l).containsExactly(reference[l]);
                float[] badRows = java.util.Arrays.copyOfRange(mixed[l], 0, bad * heads * d);
                if (l >= 1) assertThat(badRows).as("layer %d", l).containsOnly(0f);
            }
            together.advance(good);
            assertThat(h.manager.stats().bytesUsed()).isPositive();
            faulty.close();
            together.close();
            alone.close();
            assertThat(h.manager.stats().bytesUsed()).isZero();
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3})
    void aPlainBatchFailsTheWholeStep(int threads) {
        try (Harness h = new Harness(G, 16 << 20, 4, threads, 5)) {
            List<StepBatch.Entry> entries = new ArrayList<>();
            entries.add(new StepBatch.Entry(h.manager.open("fp32"), 0, 3, 0));
            entries.add(new StepBatch.Entry(h.manager.open("fp32+testthrow:layer=0"), 3, 2, 0));
            StepBatch batch = new StepBatch(entries);
            float[][] q = {h.gaussian(5 * G.heads() * G.headDim())}, k = {h.gaussian(5 * G.kvDim())};
            MemorySegment qs = h.arena.allocate(q[0].length * 4L), ks = h.arena.allocate(k[0].length * 4L), out = h.arena.allocate(q[0].length * 4L);
            MemorySegment.copy(q[0], 0, qs, ValueLayout.JAVA_FLOAT, 0, q[0].length);
            MemorySegment.copy(k[0], 0, ks, ValueLayout.JAVA_FLOAT, 0, k[0].length);
            assertThatThrownBy(() -> h.attention.attend(0, batch, qs, ks, ks, out))
                    .isInstanceOf(IllegalStateException.class).hasMessage("injected at layer 0");
        }
    }
}
