package dev.kvserve.kernels.cpu;

import static dev.kvserve.kernels.cpu.Vec.F32;

import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.GgmlQuantize;
import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.nativ.cpu.CpuKernels;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The CPU implementation of {@link Backend}: Vector API kernels over host MemorySegments and a
 * private {@link CpuThreadPool}. Matmuls are split over output rows; the other ops are cheap and
 * run on the calling thread.
 *
 * <p>Buffers from {@link #allocate} come from a shared arena (the pool's threads write them),
 * 64-byte aligned, and live until {@link #close}. Weight segments are read by the pool's threads
 * too, so they must not belong to a confined arena: map model files with {@link Arena#ofShared},
 * {@link Arena#global} or {@link Arena#ofAuto}.
 *
 * <p>Until C2 has compiled a kernel, its vector operations run as heap objects, far slower;
 * {@link #upload} therefore warms up the kernels of every large weight's type once per JVM (see
 * {@link #warmUp}).
 *
 * <p>Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and Q4_K matmuls run on the int8 kernels of {@link CpuKernels} where that library loads
 * (x86-64 Linux with AVX2): the activations are quantized to int8 blocks once per matmul (of 32
 * values; of 256 as ggml's q8_K for Q4_K), as llama.cpp does for these types, and each weight block meets them in an integer dot product. The
 * Vector API has no such instruction and widens every weight to a float, which caps its kernels at
 * about half the weights per second on one core. Elsewhere, or with {@code
 * -Dkvserve.cpu.native=false}, these types use the Vector API kernels with float activations.
 *
 * <p>Not thread-safe, as {@link Backend} specifies: one caller at a time.
 */
public final class CpuBackend implements Backend {

    /** Below this many weight bytes × batch rows a matmul runs on the caller: waking threads costs more. */
    private static final long PARALLEL_THRESHOLD = 128 * 1024;
    /** Weights at least this large make {@link #upload} warm their kernels up. */
    public static final long WARMUP_MIN_ELEMENTS = 1L << 20;
    /** Chunks per thread: enough that a thread slowed by a noisy neighbour just takes fewer. */
    private static final int CHUNKS_PER_THREAD = 16;

    private final Arena arena = Arena.ofShared();
    private final CpuThreadPool pool;
    private final MatmulTask matmulTask = new MatmulTask();
    /** The int8 kernels for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and Q4_K weights, or null to use the Vector API ones. */
    private final CpuKernels int8;
    private final Int8MatmulTask int8Task;
    /** Quantized activations of the current matmul (int8 values, scales, run sums); grown, never shrunk. */
    private Arena int8Arena;
    private MemorySegment xq = MemorySegment.NULL, xd = MemorySegment.NULL, xs = MemorySegment.NULL;
    /**
     * Weights of the int8 kernels' types {@link #upload} returned, each with its copy repacked by eight rows once a
     * matmul has used it (null until then).
     */
    private final java.util.Map<WeightTensor, MemorySegment> packed = new java.util.IdentityHashMap<>();
    private float[] activations = new float[0];
    private float[] sums = new float[0];
    private float[] rowBuffer = new float[0];
    /**
     * cos/sin tables, one per distinct config (a model uses one or two). Looked up by value:
     * RopeConfig holds an array, so its equals() is identity for configs with frequency factors.
     */
    private final java.util.List<RopeTable> ropeTables = new java.util.ArrayList<>();
    private boolean closed;

    /** A backend using every available processor. */
    public CpuBackend() {
        this(Runtime.getRuntime().availableProcessors());
    }

    /**
     * A backend whose matmuls use {@code threads} threads (the caller and threads-1 workers), and
     * the int8 kernels for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and Q4_K where they load.
     */
    public CpuBackend(int threads) {
        this(threads, true);
    }

    /** As {@link #CpuBackend(int)}; {@code int8Kernels} false keeps every type on the Vector API kernels. */
    public CpuBackend(int threads, boolean int8Kernels) {
        this.pool = new CpuThreadPool(threads);
        this.int8 = int8Kernels ? CpuKernels.probe().kernels() : null;
        this.int8Task = int8 == null ? null : new Int8MatmulTask(int8);
    }

    /**
     * Whether matmuls over {@code type} quantize the activations to int8 blocks first (ggml's
     * {@code vec_dot_q8_0_q8_0} / {@code vec_dot_q4_0_q8_0} / {@code vec_dot_q5_0_q8_0} numerics; Q4_1
     * and Q5_1 as ggml's {@code vec_dot_q4_1_q8_1} / {@code vec_dot_q5_1_q8_1} but with the activation
     * block sums exact; Q4_K as {@code vec_dot_q4_K_q8_K}) instead of using them as floats.
     */
    public boolean quantizesActivations(GgmlType type) {
        return int8 != null && CpuKernels.supports(type.id);
    }

    /**
     * Gets the kernels of {@code types} and the row-wise ops compiled by C2 before real work
     * reaches them (see {@link KernelWarmup}), once per JVM. {@link #upload} does this by itself
     * for the type of any weight of at least {@value #WARMUP_MIN_ELEMENTS} values (a real model's
     * matrix, not a tiny test model's, whose matmuls are cheap even before compilation).
     */
    public static void warmUp(GgmlType... types) {
        KernelWarmup.warmOps();
        for (GgmlType t : types) KernelWarmup.warm(t);
    }

    public int threads() {
        return pool.parallelism();
    }

    @Override
    public String name() {
        return "cpu (" + pool.parallelism() + " threads, " + Vec.F.vectorBitSize() + "-bit vectors"
                + (int8 == null ? "" : ", int8 Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q6_K kernels on " + CpuKernels.isaName(int8.isa())) + ")";
    }

    @Override
    public MemorySegment allocate(long bytes) {
        checkOpen();
        if (bytes < 0) throw new IllegalArgumentException("negative allocation size " + bytes);
        return arena.allocate(Math.max(bytes, 1), 64).asSlice(0, bytes);
    }

    /**
     * Returns {@code host} itself: the kernels read weights where they are (memory-mapped files
     * included). Where the int8 kernels run, a Q8_0, Q4_0, Q4_1, Q5_0 or Q5_1 weight of eight rows or more is also
     * repacked into this backend's memory at its first {@link #matmul}, eight rows' blocks side by
     * side, as llama.cpp's CPU backend does at load: lanes become rows, so a block of eight rows is
     * a few integer dot products with no shuffle or horizontal sum (Llama-3.2-1B, one thread: Q4_0
     * decode 1.35×, prefill about 2× on both types). Waiting for the first matmul spares the
     * tables that are only looked up ({@link #embed}: an untied model's token embeddings). The
     * repacked copy serves the returned tensor until {@link #close}; the mapped original, which
     * only {@link #embed} and the last rows % 8 still read, is then dropped from this process's
     * resident memory ({@link MemorySegment#unload}) and comes back from the page cache if touched.
     */
    @Override
    public WeightTensor upload(WeightTensor host) {
        checkWeight(host);
        checkOpen();
        if (quantizesActivations(host.type()) && CpuKernels.repacks(host.type().id) && host.rows() >= 8) {
            packed.putIfAbsent(host, null);
        }
        if (host.elements() >= WARMUP_MIN_ELEMENTS) {
            KernelWarmup.warmOps();
            KernelWarmup.warm(this, host);
        }
        return host;
    }

    @Override
    public void copyFromHost(MemorySegment host, MemorySegment dst) {
        if (dst.byteSize() < host.byteSize()) {
            throw new IllegalArgumentException("destination holds " + dst.byteSize() + " bytes, source " + host.byteSize());
        }
        MemorySegment.copy(host, 0, dst, 0, host.byteSize());
    }

    @Override
    public void copyToHost(MemorySegment src, MemorySegment host) {
        if (src.byteSize() < host.byteSize()) {
            throw new IllegalArgumentException("source holds " + src.byteSize() + " bytes, destination " + host.byteSize());
        }
        MemorySegment.copy(src, 0, host, 0, host.byteSize());
    }

    @Override
    public void copy(MemorySegment src, long srcOffset, MemorySegment dst, long dstOffset, long bytes) {
        MemorySegment.copy(src, srcOffset, dst, dstOffset, bytes);
    }

    @Override
    public void matmul(WeightTensor w, MemorySegment x, MemorySegment out, int batch) {
        checkOpen();
        checkWeight(w);
        if (batch < 1) throw new IllegalArgumentException("batch must be positive, got " + batch);
        int cols = w.cols();
        int rows = w.rows();
        checkFloats(x, (long) batch * cols, "matmul input x of " + w.name());
        checkFloats(out, (long) batch * rows, "matmul output of " + w.name());
        int n = Math.multiplyExact(batch, cols);
        if (quantizesActivations(w.type())) {
            matmulInt8(w, x, out, batch);
            return;
        }
        // Activations are copied to a float[]: the kernels then read them with array loads (no
        // segment checks in the inner loop), and out may alias x.
        if (activations.length < n) activations = new float[n];
        MemorySegment.copy(x, F32, 0, activations, 0, n);
        WeightKernel kernel = WeightKernel.of(w.type());
        if (kernel.needsSums()) {
            int perRow = cols / 32;
            if (sums.length < batch * perRow) sums = new float[batch * perRow];
            for (int b = 0; b < batch; b++) VectorOps.blockSums(activations, b * cols, cols, sums, b * perRow);
        }
        long rowBytes = w.rowBytes();
        int chunkRows = chunkRows(rowBytes, rows, batch);
        matmulTask.set(kernel, w.data(), rowBytes, rows, cols, batch, activations, sums, out, chunkRows);
        try {
            pool.run(matmulTask, ceilDiv(rows, chunkRows));
        } finally {
            matmulTask.clear();
        }
    }

    /** The repacked copy of {@code w}, made on first use, or null if {@code w} was not uploaded. */
    private MemorySegment repacked(WeightTensor w) {
        MemorySegment r = packed.get(w);
        if (r == null && packed.containsKey(w)) {
            r = repack(w);
            packed.put(w, r);
            if (w.data().isMapped()) w.data().asSlice(0, w.rows() / 8 * 8 * w.rowBytes()).unload();
        }
        return r;
    }

    private MemorySegment repack(WeightTensor w) {
        int type = w.type().id;
        int groups = w.rows() / 8;
        int cols = w.cols();
        MemorySegment dst = arena.allocate(CpuKernels.packedBytes(type, groups, cols), 64);
        // In parallel, in chunks of groups: a 1B model's Q8_0 weights are 1.3 GB.
        int perChunk = Math.max(1, ceilDiv(groups, pool.parallelism() * CHUNKS_PER_THREAD));
        pool.run(chunk -> {
            int g0 = chunk * perChunk;
            int n = Math.min(groups, g0 + perChunk) - g0;
            int8.repackX8(type, w.data().asSlice(8L * g0 * w.rowBytes()), w.rowBytes(), n, cols,
                    dst.asSlice(CpuKernels.packedBytes(type, g0, cols)));
        }, ceilDiv(groups, perChunk));
        return dst;
    }

    private void matmulInt8(WeightTensor w, MemorySegment x, MemorySegment out, int batch) {
        int cols = w.cols();
        int rows = w.rows();
        long quants = CpuKernels.quantsBytes(batch, cols);
        if (xq.byteSize() < quants) {
            if (int8Arena != null) int8Arena.close();
            int8Arena = Arena.ofShared();
            xq = int8Arena.allocate(quants, 64);
            xd = int8Arena.allocate(CpuKernels.scalesBytes(batch, cols), 64);
            xs = int8Arena.allocate(CpuKernels.sumsBytes(batch, cols), 64);
        }
        // Quantizing first also makes out aliasing x harmless. Q4_K takes q8_K activations (blocks
        // of 256), which fit in the buffers sized for the Q8_0-style ones.
        int8.quantize(w.type().id, x, cols, batch, cols, xq, xd, xs);
        MemorySegment repacked = repacked(w);
        int chunkRows = chunkRows(w.rowBytes(), rows, batch);
        if (repacked != null) chunkRows = (chunkRows + 7) / 8 * 8;   // whole groups of eight rows
        int8Task.set(w.type().id, w.data(), repacked, w.rowBytes(), rows, cols, batch,
                xq, xd, xs, out, chunkRows);
        try {
            pool.run(int8Task, ceilDiv(rows, chunkRows));
        } finally {
            int8Task.clear();
        }
    }

    /** Rows per chunk: all of them for small work or one thread, else CHUNKS_PER_THREAD chunks per thread. */
    private int chunkRows(long rowBytes, int rows, int batch) {
        if (rowBytes * rows * batch < PARALLEL_THRESHOLD || pool.parallelism() == 1) return rows;
        return Math.max(4, ceilDiv(rows, pool.parallelism() * CHUNKS_PER_THREAD));
    }

    @Override
    public void rmsnorm(MemorySegment out, MemorySegment x, WeightTensor weight, int dim, int batch, float eps) {
        checkOpen();
        checkF32Vector(weight, dim, "rmsnorm");
        checkFloats(x, (long) dim * batch, "rmsnorm input");
        checkFloats(out, (long) dim * batch, "rmsnorm output");
        VectorOps.rmsnorm(out, x, weight.data(), dim, batch, eps);
    }

    @Override
    public void rope(MemorySegment x, int[] positions, int heads, int headDim, RopeConfig rope, int batch) {
        checkOpen();
        if (rope.dims() > headDim || rope.dims() % 2 != 0 || rope.dims() <= 0) {
            throw new IllegalArgumentException("rope dims " + rope.dims() + " must be even and at most head size " + headDim);
        }
        if (positions.length < batch) {
            throw new IllegalArgumentException(positions.length + " positions for a batch of " + batch);
        }
        checkFloats(x, (long) batch * heads * headDim, "rope input");
        RopeTable ropeTable = null;
        for (RopeTable t : ropeTables) {
            if (t.matches(rope)) {
                ropeTable = t;
                break;
            }
        }
        if (ropeTable == null) {
            if (ropeTables.size() >= 8) ropeTables.clear();
            ropeTable = new RopeTable(rope);
            ropeTables.add(ropeTable);
        }
        int half = rope.dims() / 2;
        boolean neox = rope.neox();
        for (int b = 0; b < batch; b++) {
            int pos = positions[b];
            if (pos < 0) throw new IllegalArgumentException("negative position " + pos + " in row " + b);
            float[] table = ropeTable.page(pos);
            int t = ropeTable.offset(pos);
            for (int h = 0; h < heads; h++) {
                long base = ((long) b * heads + h) * headDim;
                for (int i = 0; i < half; i++) {
                    float cos = table[t + 2 * i];
                    float sin = table[t + 2 * i + 1];
                    long i0 = neox ? base + i : base + 2L * i;
                    long i1 = neox ? base + i + half : base + 2L * i + 1;
                    float x0 = x.getAtIndex(F32, i0);
                    float x1 = x.getAtIndex(F32, i1);
                    x.setAtIndex(F32, i0, x0 * cos - x1 * sin);
                    x.setAtIndex(F32, i1, x0 * sin + x1 * cos);
                }
            }
        }
    }

    @Override
    public void siluMul(MemorySegment gate, MemorySegment up, int dim, int batch) {
        checkOpen();
        checkFloats(gate, (long) dim * batch, "siluMul gate");
        checkFloats(up, (long) dim * batch, "siluMul up");
        VectorOps.siluMul(gate, up, (long) dim * batch);
    }

    @Override
    public void add(MemorySegment acc, MemorySegment x, long n) {
        checkOpen();
        checkFloats(acc, n, "add accumulator");
        checkFloats(x, n, "add input");
        VectorOps.add(acc, x, n);
    }

    @Override
    public void addBias(MemorySegment x, WeightTensor bias, int dim, int batch) {
        checkOpen();
        checkF32Vector(bias, dim, "addBias");
        checkFloats(x, (long) dim * batch, "addBias input");
        VectorOps.addBias(x, bias.data(), dim, batch);
    }

    @Override
    public void embed(WeightTensor table, int[] tokens, MemorySegment out) {
        checkOpen();
        checkWeight(table);
        int cols = table.cols();
        int rows = table.rows();
        checkFloats(out, (long) tokens.length * cols, "embed output");
        long rowBytes = table.rowBytes();
        if (rowBuffer.length < cols) rowBuffer = new float[cols];
        for (int b = 0; b < tokens.length; b++) {
            int token = tokens[b];
            if (token < 0 || token >= rows) {
                throw new IllegalArgumentException("token id " + token + " outside " + table.name() + " (" + rows + " rows)");
            }
            long dst = (long) b * cols * Float.BYTES;
            if (table.type() == GgmlType.F32) {
                MemorySegment.copy(table.data(), token * rowBytes, out, dst, rowBytes);
            } else {
                GgmlQuantize.dequantizeRow(table.type(), table.data(), token * rowBytes, rowBuffer, 0, cols);
                MemorySegment.copy(rowBuffer, 0, out, F32, dst, cols);
            }
        }
    }

    @Override
    public void softmax(MemorySegment x, int dim, int batch) {
        checkOpen();
        checkFloats(x, (long) dim * batch, "softmax input");
        VectorOps.softmax(x, dim, batch);
    }

    @Override
    public void synchronize() {
        // Every op has finished when it returns.
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        pool.close();
        packed.clear();
        arena.close();
        if (int8Arena != null) int8Arena.close();
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("CPU backend is closed");
    }

    private static void checkWeight(WeightTensor w) {
        if (w == null) throw new IllegalArgumentException("weight tensor is null");
        if (!w.type().supported) {
            throw new IllegalArgumentException("weight " + w.name() + " has type " + w.type() + ", which has no kernel");
        }
        long need = w.type().bytesFor(w.elements());
        if (w.data().byteSize() < need) {
            throw new IllegalArgumentException("weight " + w + " needs " + need + " bytes but holds " + w.data().byteSize());
        }
    }

    private static void checkF32Vector(WeightTensor w, int dim, String op) {
        if (w.type() != GgmlType.F32) throw new IllegalArgumentException(op + " weight " + w.name() + " must be F32, is " + w.type());
        if (w.elements() < dim) throw new IllegalArgumentException(op + " weight " + w + " is shorter than " + dim);
        if (w.data().byteSize() < (long) dim * Float.BYTES) {
            throw new IllegalArgumentException(op + " weight " + w.name() + " holds fewer than " + dim + " floats");
        }
    }

    private static void checkFloats(MemorySegment s, long floats, String what) {
        if (s == null) throw new IllegalArgumentException(what + " is null");
        if (s.byteSize() < floats * Float.BYTES) {
            throw new IllegalArgumentException(what + " holds " + s.byteSize() + " bytes, needs " + floats * Float.BYTES);
        }
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }
}
