package dev.kvserve.bench.jmh;

import dev.kvserve.kernels.GgmlQuantize;
import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.ScalarKernels;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.kernels.cpu.CpuBackend;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;
import java.util.concurrent.TimeUnit;
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
 * {@link CpuBackend#matmul} at Llama-3.2-1B sizes (hidden 2048, FFN 8192) per weight type, as
 * mat-vec (batch 1, decode) and mat-mat (batch 8, batched decode / prefill tile).
 *
 * <p>Decode streams every weight from DRAM once per token, so the matrices are rotated through
 * enough copies (≥ {@value #ROTATION_BYTES} bytes) that none is still in the last-level cache
 * when it comes round again: the time is the DRAM-streaming time, as in a real decode step.
 * Weight GB/s = {@code rows × rowBytes / time}; {@link BenchReport} prints it.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.SampleTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 4, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx2g"})
public class MatmulBench {
    static final long ROTATION_BYTES = 256L << 20;

    @Param({"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K"})
    public GgmlType type;

    /** rows x cols: 2048x2048 is attn_q/attn_output, 8192x2048 is ffn_gate/ffn_up. */
    @Param({"2048x2048", "8192x2048"})
    public String shape;

    @Param({"1", "2"})
    public int threads;

    @Param({"1", "8"})
    public int batch;

    private Arena arena;
    private CpuBackend backend;
    private WeightTensor[] copies;
    private MemorySegment x;
    private MemorySegment out;
    private int next;

    @Setup(Level.Trial)
    public void setup() {
        String[] dims = shape.split("x");
        int rows = Integer.parseInt(dims[0]);
        int cols = Integer.parseInt(dims[1]);
        arena = Arena.ofShared();
        backend = new CpuBackend(threads);
        CpuBackend.warmUp(type);
        copies = weightCopies(arena, type, rows, cols, ROTATION_BYTES);
        x = backend.allocate((long) batch * cols * Float.BYTES);
        Random rnd = new Random(1);
        for (long i = 0; i < (long) batch * cols; i++) x.setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) rnd.nextGaussian());
        out = backend.allocate((long) batch * rows * Float.BYTES);
    }

    /**
     * Copies of one rows x cols matrix of {@code type}, together at least {@code totalBytes}
     * (and at least two). Only the first 64 rows are quantized from random values and the rest
     * repeat them: the bytes' values do not change the streaming time, and ggml's reference
     * K-quant encoders would take seconds for 16M values.
     */
    static WeightTensor[] weightCopies(Arena arena, GgmlType type, int rows, int cols, long totalBytes) {
        int seedRows = Math.min(rows, 64);
        float[] values = new float[seedRows * cols];
        Random rnd = new Random(42);
        for (int i = 0; i < values.length; i++) values[i] = (float) rnd.nextGaussian() * 0.02f;
        MemorySegment seed = GgmlQuantize.quantize(type, values, cols, arena);
        long bytes = type.bytesFor((long) rows * cols);
        int n = (int) Math.max(2, (totalBytes + bytes - 1) / bytes);
        WeightTensor[] copies = new WeightTensor[n];
        for (int c = 0; c < n; c++) {
            MemorySegment data = arena.allocate(bytes, 64);
            for (long off = 0; off < bytes; off += seed.byteSize()) {
                MemorySegment.copy(seed, 0, data, off, Math.min(seed.byteSize(), bytes - off));
            }
            copies[c] = new WeightTensor("w" + c, type, new long[] {cols, rows}, data);
        }
        return copies;
    }

    @Benchmark
    public void matmul() {
        backend.matmul(copies[next], x, out, batch);
        if (++next == copies.length) next = 0;
    }

    /** The kernels ran hot (C2-compiled) by now: check their result against the scalar reference. */
    @TearDown(Level.Trial)
    public void verifyAndClose() {
        WeightTensor w = copies[0];
        backend.matmul(w, x, out, batch);
        int rows = w.rows();
        int checkRows = 8;
        WeightTensor head = new WeightTensor("head", w.type(), new long[] {w.cols(), checkRows},
                w.data().asSlice(0, w.rowBytes() * checkRows));
        MemorySegment expected = arena.allocate((long) batch * checkRows * Float.BYTES);
        ScalarKernels.matmul(head, x, expected, batch);
        for (int b = 0; b < batch; b++) {
            for (int r = 0; r < checkRows; r++) {
                float got = out.getAtIndex(ValueLayout.JAVA_FLOAT, (long) b * rows + r);
                float want = expected.getAtIndex(ValueLayout.JAVA_FLOAT, (long) b * checkRows + r);
                if (Math.abs(got - want) > 1e-3f * Math.max(1f, Math.abs(want))) {
                    throw new IllegalStateException(type + " " + shape + " row " + r + " batch row " + b
                            + ": kernel " + got + " vs reference " + want);
                }
            }
        }
        backend.close();
        arena.close();
    }
}
