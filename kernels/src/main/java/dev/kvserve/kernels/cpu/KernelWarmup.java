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
 * many seconds. Matmuls over the first rows of a real weight are made in rounds until the rounds
 * run at compiled speed, i.e. until C2's code is installed: typically a fraction of a second to a
 * few seconds per type, once per JVM.
 *
 * <p>Why through the backend's matmul on the real weight: C2 compiles from the profile it has
 * seen (segment classes, memory sessions, call sites, branch counts). The kernels used to be
 * warmed by direct calls on a confined arena's small matrix; fed the model's memory-mapped,
 * shared-session weights afterwards, that code ran the decode at half speed (Llama-3.2-1B Q8_0,
 * one thread: 4.3 tok/s, against 8.0 with no warm-up at all). Warmed through
 * {@link CpuBackend#matmul} on the weight's own segment, the profile is the model's.
 *
 * <p>Disabled with {@code -Dkvserve.cpu.warmup=false}.
 */
final class KernelWarmup {
    private KernelWarmup() {}

    /** Calls are made in rounds of this many; warm-up ends when a round runs at compiled speed. */
    private static final int ROUND = 50;
    /** Upper bound on rounds, in case the JIT is off or never gets round to it. */
    private static final int MAX_ROUNDS = 300;
    /** Matmul calls of each batch size in one round of {@link #warm(CpuBackend, WeightTensor)}. */
    private static final int MATMUL_ROUND = 5;
    /** Weight rows the matmul warm-up runs over. */
    private static final int WARM_ROWS = 16;
    /** Batch of the warm-up call that takes the tile path (MatmulTask's TILE_MIN_ROWS). */
    private static final int TILE_BATCH = 16;
    private static final Set<GgmlType> WARMED = EnumSet.noneOf(GgmlType.class);
    private static boolean opsWarmed;

    static boolean enabled() {
        return !"false".equalsIgnoreCase(System.getProperty("kvserve.cpu.warmup"));
    }

    /**
     * Runs the kernels of {@code type} on a small matrix of random weights in shared memory, once
     * per type per JVM (for benchmarks that have no weight yet; {@link #warm(CpuBackend, WeightTensor)} is
     * better where there is one). Odd block counts run the paired-block loops and their tails.
     */
    static void warm(GgmlType type) {
        if (!enabled() || !type.supported || warmed(type)) return;
        int cols = switch (type) {
            case Q2_K, Q3_K, Q4_K, Q5_K, Q6_K -> 512;
            case Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL -> 544;
            default -> 521;
        };
        try (Arena arena = Arena.ofShared(); CpuBackend backend = new CpuBackend(1)) {
            Random rnd = new Random(17);
            float[] values = new float[WARM_ROWS * cols];
            for (int i = 0; i < values.length; i++) values[i] = (float) rnd.nextGaussian();
            MemorySegment w = GgmlQuantize.quantize(type, values, cols, arena);
            warm(backend, new WeightTensor("warm-up", type, new long[] {cols, WARM_ROWS}, w));
        }
    }

    /**
     * Runs {@code backend}'s matmul over the first rows of {@code weight} at batch sizes 1 (the
     * decode kernel), 5 (the four-row kernel and one single row) and {@value #TILE_BATCH} (the
     * tile kernel), once per type per JVM: the same call sites, segment class, memory session and
     * buffers as the model's own matmuls, so what C2 compiles from this profile is what the model
     * needs.
     */
    static void warm(CpuBackend backend, WeightTensor weight) {
        GgmlType type = weight.type();
        synchronized (KernelWarmup.class) {
            if (!enabled() || !type.supported || WARMED.contains(type)) return;
            WARMED.add(type);
        }
        int cols = weight.cols();
        int rows = Math.min(WARM_ROWS, weight.rows());
        WeightTensor head = new WeightTensor(weight.name(), type, new long[] {cols, rows},
                weight.data().asSlice(0, rows * weight.rowBytes()));
        // a shared arena, as CpuBackend#allocate uses, but freed afterwards
        try (Arena arena = Arena.ofShared()) {
            MemorySegment x = arena.allocate((long) TILE_BATCH * cols * Float.BYTES, 64);
            Random rnd = new Random(17);
            for (long i = 0; i < (long) TILE_BATCH * cols; i++) x.setAtIndex(Vec.F32, i, (float) rnd.nextGaussian());
            MemorySegment out = arena.allocate((long) TILE_BATCH * rows * Float.BYTES, 64);
            untilCompiled(() -> {
                for (int i = 0; i < MATMUL_ROUND; i++) {
                    backend.matmul(head, x, out, 1);
                    backend.matmul(head, x, out, 5);
                    if (i % 4 == 0) backend.matmul(head, x, out, TILE_BATCH);
                }
            }, (long) MATMUL_ROUND * rows * cols * 2);
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
