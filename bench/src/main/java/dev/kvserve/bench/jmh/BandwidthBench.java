package dev.kvserve.bench.jmh;

import dev.kvserve.kernels.cpu.CpuThreadPool;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.concurrent.TimeUnit;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The roofline for the matmul kernels: a streaming read (sum of floats) of a 1 GiB off-heap
 * segment, on 1 and 2 threads of the same {@link CpuThreadPool} the backend uses. 1 GiB / time is
 * the DRAM read bandwidth a memory-bound mat-vec can at best reach.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.SampleTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
public class BandwidthBench {
    static final long BYTES = 1L << 30;
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int CHUNKS = 256;

    @Param({"1", "2"})
    public int threads;

    private Arena arena;
    private MemorySegment data;
    private CpuThreadPool pool;
    private final float[] partial = new float[CHUNKS];
    private final CpuThreadPool.Task sumTask = this::sumChunk;

    @Setup(Level.Trial)
    public void setup() {
        arena = Arena.ofShared();
        data = arena.allocate(BYTES, 4096);
        data.fill((byte) 1); // touch every page so the benchmark measures reads, not page faults
        pool = new CpuThreadPool(threads);
    }

    private void sumChunk(int chunk) {
        long per = BYTES / CHUNKS;
        long from = chunk * per;
        long to = from + per;
        int step = F.vectorByteSize();
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (long o = from; o < to; o += 4L * step) {
            a0 = a0.add(FloatVector.fromMemorySegment(F, data, o, ByteOrder.LITTLE_ENDIAN));
            a1 = a1.add(FloatVector.fromMemorySegment(F, data, o + step, ByteOrder.LITTLE_ENDIAN));
            a2 = a2.add(FloatVector.fromMemorySegment(F, data, o + 2L * step, ByteOrder.LITTLE_ENDIAN));
            a3 = a3.add(FloatVector.fromMemorySegment(F, data, o + 3L * step, ByteOrder.LITTLE_ENDIAN));
        }
        partial[chunk] = a0.add(a1).add(a2.add(a3)).reduceLanes(VectorOperators.ADD);
    }

    @Benchmark
    public float streamSum() {
        pool.run(sumTask, CHUNKS);
        float s = 0;
        for (float p : partial) s += p;
        return s;
    }

    @TearDown(Level.Trial)
    public void close() {
        pool.close();
        arena.close();
    }
}
