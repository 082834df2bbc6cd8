package dev.kvserve.kvcache;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.format.BlockCodec;
import dev.kvserve.kvcache.format.BlockContext;
import dev.kvserve.kvcache.format.FormatBinding;
import dev.kvserve.kvcache.format.FormatState;
import dev.kvserve.kvcache.format.KeyFrame;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Each codec's vectorised {@code keyScores}/{@code addValues} against the scalar reference the
 * {@link BlockCodec} interface provides (decode one slot, rotate if stored before RoPE, plain loops).
 */
class CodecReferenceTest {

    /** Delegates everything but the two kernels, so the interface's scalar defaults run. */
    record Scalar(BlockCodec c) implements BlockCodec {
        public String name() { return c.name(); }
        public KeyFrame keyFrame() { return c.keyFrame(); }
        public long blockBytes() { return c.blockBytes(); }
        public boolean perToken() { return c.perToken(); }
        public void write(MemorySegment b, int s, KvRows r, int row, int h, BlockContext x) { c.write(b, s, r, row, h, x); }
        public void encodeBlock(MemorySegment b, float[] k, float[] v, int n, BlockContext x) { c.encodeBlock(b, k, v, n, x); }
        public void decodeKey(MemorySegment b, int s, float[] d, int o, BlockContext x) { c.decodeKey(b, s, d, o, x); }
        public void decodeValue(MemorySegment b, int s, float[] d, int o, BlockContext x) { c.decodeValue(b, s, d, o, x); }
    }

    @ParameterizedTest
    @ValueSource(strings = {"fp32", "fp16", "int8", "int4:group=8", "int3", "int3:group=8", "kivi:bits=2,group=4,residual=0", "kivi:bits=4,group=16,residual=0"})
    void vectorKernelsMatchTheScalarReference(String spec) {
        int d = 16, bt = 16, nq = 6;
        KvGeometry g = new KvGeometry(1, 6, 2, d, 1024, new RopeConfig(d, 10000f, 1f, true));
        FormatBinding binding = KvCachePolicy.parse(spec).format().bind(g, bt);
        BlockCodec codec = binding.sealedCodec(0, binding.appendCodec(0, 0));
        Random rnd = new Random(spec.hashCode());
        float[] keys = new float[bt * d], values = new float[bt * d];
        for (int i = 0; i < keys.length; i++) {
            keys[i] = (float) rnd.nextGaussian();
            values[i] = (float) rnd.nextGaussian();
        }
        int[] positions = new int[bt];
        for (int s = 0; s < bt; s++) positions[s] = s == 5 ? -1 : 100 + s;
        RopeTable rope = new RopeTable(g.rope(), d);
        BlockContext ctx = new BlockContext(d, rope).set(0, 1, positions, FormatState.NONE);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment block = arena.allocate(codec.blockBytes());
            codec.encodeBlock(block, keys, values, bt, ctx);
            float[] q = new float[nq * 20];
            for (int i = 0; i < q.length; i++) q[i] = (float) rnd.nextGaussian();
            int from = 2, to = 14, n = to - from;
            float[] fast = new float[nq * n], slow = new float[nq * n];
            codec.keyScores(block, from, to, q, 3, 20, nq, fast, n, ctx);
            new Scalar(codec).keyScores(block, from, to, q, 3, 20, nq, slow, n, ctx);
            for (int i = 0; i < fast.length; i++) {
                if (positions[from + i % n] < 0) continue;
                assertThat(fast[i]).as("score %d", i).isCloseTo(slow[i], within(1e-4f));
            }
            float[] w = new float[nq * n];
            for (int i = 0; i < w.length; i++) w[i] = positions[from + i % n] < 0 ? 0f : rnd.nextFloat();
            float[] accFast = new float[nq * 20], accSlow = new float[nq * 20];
            codec.addValues(block, from, to, w, n, nq, accFast, 1, 20, ctx);
            new Scalar(codec).addValues(block, from, to, w, n, nq, accSlow, 1, 20, ctx);
            for (int i = 0; i < accFast.length; i++) assertThat(accFast[i]).isCloseTo(accSlow[i], within(1e-4f));
            assertThat(accFast).isNotEqualTo(new float[nq * 20]);
        }
    }
}
