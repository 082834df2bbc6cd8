package dev.kvserve.kernels.cpu;

import dev.kvserve.kernels.GgmlQuantize;
import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.EnumSet;
import java.util.Random;
import java.util.Set;

/**
 * Gets a weight type's kernels compiled by C2 before real work reaches them.
 *
 * <p>Why: until C2 compiles a Vector API method, every vector op runs as a heap object (tens to
 * hundreds of times slower), and C2 only compiles a method after thousands of calls. A decode step
 * makes few, long kernel calls, so without this the first tokens of a model would crawl for
 * many seconds. A few thousand calls on the first rows of a real weight are made in rounds until
 * the rounds run at compiled speed, i.e. until C2's code is installed: typically a fraction of a
 * second to a few seconds per type, once per JVM.
 *
 * <p>Why the real weight: C2 specialises the kernels' segment accesses to the segment class and
 * memory session it has seen. Warmed up on a confined arena's segment and then fed the model's
 * memory-mapped, shared-session weights, the compiled kernels kept checks in the inner loop that
 * halved decode speed (Llama-3.2-1B Q8_0, one thread: 4.3 tok/s warmed on a confined segment,
 * 8.0 without warm-up). The weight's own segment, a shared-arena output buffer (what
 * {@link CpuBackend#allocate} returns) and float[] activations are exactly what the model passes.
 *
 * <p>Disabled with {@code -Dkvserve.cpu.warmup=false}.
 */
final class KernelWarmup {
    private KernelWarmup() {}

    /** Calls are made in rounds of this many; warm-up ends when a round runs at compiled speed. */
    private static final int ROUND = 50;
    /** Upper bound on rounds, in case the JIT is off or never gets round to it. */
    private static final int MAX_ROUNDS = 300;
    private static final Set<GgmlType> WARMED = EnumSet.noneOf(GgmlType.class);
    private static boolean opsWarmed;
    /** Where the warm-up's results go, so that C2 cannot drop the calls that made them. */
    static volatile float blackhole;

    static boolean enabled() {
        return !"false".equalsIgnoreCase(System.getProperty("kvserve.cpu.warmup"));
    }

    /**
     * Runs the kernels of {@code type} on a small matrix of random weights in shared memory, once
     * per type per JVM (for benchmarks that have no weight yet; {@link #warm(WeightTensor)} is
     * better where there is one). Odd block counts run the paired-block loops and their tails.
     */
    static void warm(GgmlType type) {
        if (!enabled() || !type.supported || warmed(type)) return;
        int cols = switch (type) {
            case Q4_K, Q6_K -> 512;
            case Q8_0, Q4_0 -> 544;
            default -> 521;
        };
        try (Arena arena = Arena.ofShared()) {
            Random rnd = new Random(17);
            float[] values = new float[2 * cols];
            for (int i = 0; i < values.length; i++) values[i] = (float) rnd.nextGaussian();
            MemorySegment w = GgmlQuantize.quantize(type, values, cols, arena);
            warm(new WeightTensor("warm-up", type, new long[] {cols, 2}, w));
        }
    }

    /** Runs the kernels of {@code weight}'s type on its first rows, once per type per JVM. */
    static void warm(WeightTensor weight) {
        GgmlType type = weight.type();
        synchronized (KernelWarmup.class) {
            if (!enabled() || !type.supported || WARMED.contains(type)) return;
            WARMED.add(type);
        }
        int cols = weight.cols();
        int rows = Math.min(2, weight.rows());
        int batch = 5; // one four-row tile plus a single row
        try (Arena arena = Arena.ofShared()) {
            Random rnd = new Random(17);
            float[] x = new float[batch * cols];
            for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextGaussian();
            float[] sums = new float[batch * (cols / 32) + 1];
            for (int b = 0; b < batch; b++) VectorOps.blockSums(x, b * cols, cols, sums, b * (cols / 32));
            MemorySegment out = arena.allocate((long) 2 * batch * Float.BYTES, 64);
            MemorySegment w = weight.data();
            WeightKernel kernel = WeightKernel.of(type);
            long rowBytes = weight.rowBytes();
            float[] sink = new float[1];
            float[] tile = new float[cols];
            untilCompiled(() -> {
                for (int i = 0; i < ROUND; i++) {
                    long row = (i % rows) * rowBytes;
                    sink[0] += kernel.dot(w, row, x, 0, sums, 0, cols);
                    kernel.dot4(w, row, x, 0, cols, sums, 0, cols / 32, cols, out, 0, 2);
                    kernel.decodeRow(w, row, tile, cols);
                    TileKernel.dot4(tile, x, 0, cols, cols, out, 1, 2);
                    sink[0] += TileKernel.dot(tile, x, 4 * cols, cols);
                }
            }, (long) ROUND * 10 * cols);
            blackhole = sink[0];
        }
    }

    private static synchronized boolean warmed(GgmlType type) {
        return WARMED.contains(type);
    }

    /** The row-wise ops, which every layer calls, so the first tokens do not run them slowly. */
    static synchronized void warmOps() {
        if (!enabled() || opsWarmed) return;
        opsWarmed = true;
        int dim = 136;
        // shared memory, like CpuBackend#allocate's activation buffers (see the class comment)
        try (Arena arena = Arena.ofShared()) {
            MemorySegment a = arena.allocate(dim * 2L * Float.BYTES, 64);
            MemorySegment b = arena.allocate(dim * 2L * Float.BYTES, 64);
            for (int i = 0; i < 2 * dim; i++) {
                a.setAtIndex(Vec.F32, i, (i % 7) * 0.25f - 0.5f);
                b.setAtIndex(Vec.F32, i, 1f);
            }
            untilCompiled(() -> {
                for (int i = 0; i < ROUND; i++) {
                    VectorOps.rmsnorm(a, a, b, dim, 2, 1e-5f);
                    VectorOps.softmax(a, dim, 2);
                    VectorOps.siluMul(a, b, 2L * dim);
                    VectorOps.add(a, b, 2L * dim);
                    VectorOps.addBias(a, b, dim, 2);
                }
            }, (long) ROUND * 10 * dim);
        }
    }

    /**
     * Repeats {@code round} until two rounds in a row run at compiled speed: at least one element
     * per two nanoseconds for {@code elements} elements a round. C2's Vector API code does ten or
     * more per nanosecond; the interpreter and C1 do a small fraction of one.
     */
    private static void untilCompiled(Runnable round, long elements) {
        int fastRounds = 0;
        for (int r = 0; r < MAX_ROUNDS && fastRounds < 2; r++) {
            long t0 = System.nanoTime();
            round.run();
            long dt = System.nanoTime() - t0;
            if (Boolean.getBoolean("kvserve.cpu.warmup.trace")) System.err.println("warm-up round " + r + ": " + dt / 1000 + " us");
            fastRounds = dt < 2 * elements ? fastRounds + 1 : 0;
        }
    }
}
