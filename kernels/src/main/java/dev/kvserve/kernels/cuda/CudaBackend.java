package dev.kvserve.kernels.cuda;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;

import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.nativ.cuda.Cuda;
import dev.kvserve.nativ.cuda.CudaDevice;
import dev.kvserve.nativ.cuda.GpuDevice;
import dev.kvserve.nativ.cuda.KernelArgs;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.NavigableMap;
import java.util.TreeMap;

/**
 * The {@link Backend} op set on an NVIDIA GPU (or on {@link dev.kvserve.nativ.cuda.EmulatedDevice}
 * in tests).
 *
 * <p>Buffers are segments whose address is a device pointer ({@code MemorySegment.ofAddress(ptr)
 * .reinterpret(bytes)}); Java never dereferences them. Every buffer argument is checked against the
 * allocations of this backend, so a host segment or an undersized buffer is an
 * IllegalArgumentException naming the argument instead of an illegal-address fault that would
 * poison the CUDA context. Weights are uploaded once by {@link #upload}. Everything runs in order on
 * the device's one stream; only {@link #copyToHost}, {@link #argmax}, {@link #topK} and
 * {@link #synchronize} wait for it.
 *
 * <p>Small host int arrays (positions, token ids, block tables) are uploaded into per-purpose device
 * buffers and re-sent only when their contents change, so the layers of one decode step share one
 * upload of the positions.
 */
public final class CudaBackend implements Backend {

    private final GpuDevice device;
    private final Arena arena = Arena.ofShared();
    private final KernelRunner kernels;
    private final NavigableMap<Long, Long> allocations = new TreeMap<>();
    private final Map<String, IntUpload> intUploads = new HashMap<>();
    private final Map<String, Scratch> scratch = new HashMap<>();
    private MemorySegment hostStaging = MemorySegment.NULL;
    private final CudaKvKernels kv;
    private boolean closed;

    public CudaBackend(GpuDevice device) {
        this.device = device;
        this.kernels = new KernelRunner(device, arena);
        this.kv = new CudaKvKernels(this);
    }

    /** The first CUDA device, or an IllegalStateException carrying the reason there is none. */
    public static CudaBackend open() {
        return new CudaBackend(CudaDevice.open(Cuda.probe()));
    }

    public GpuDevice device() {
        return device;
    }

    /** KV-cache kernels (paged attention, cache writes, eviction and selection scores) on this backend. */
    public CudaKvKernels kv() {
        return kv;
    }

    @Override
    public String name() {
        return "cuda (" + device.description() + ")";
    }

    // ------------------------------------------------------------------ memory

    @Override
    public MemorySegment allocate(long bytes) {
        MemorySegment s = allocateUninitialised(bytes);
        device.fill(s.address(), (byte) 0, bytes);
        return s;
    }

    private MemorySegment allocateUninitialised(long bytes) {
        requireOpen();
        if (bytes <= 0) throw new IllegalArgumentException("allocation of " + bytes + " bytes");
        long ptr = device.allocate(bytes);
        allocations.put(ptr, bytes);
        return MemorySegment.ofAddress(ptr).reinterpret(bytes);
    }

    /** Returns a buffer from {@link #allocate} (or an uploaded weight's data) to the device early. */
    public void free(MemorySegment buffer) {
        requireOpen();
        Long bytes = allocations.remove(buffer.address());
        if (bytes == null) {
            throw new IllegalArgumentException("free: segment at 0x" + Long.toHexString(buffer.address())
                    + " is not the start of an allocation of this backend");
        }
        device.synchronize();   // kernels still queued may read it
        device.free(buffer.address());
    }

    /**
     * Checks that {@code buffer} lies inside one allocation of this backend and spans at least
     * {@code bytes}; returns its device address.
     */
    long requireDevice(MemorySegment buffer, long bytes, String what) {
        return requireDevice(buffer, bytes, 4, what);
    }

    /** As {@link #requireDevice(MemorySegment, long, String)}, also requiring {@code alignment}. */
    long requireDevice(MemorySegment buffer, long bytes, int alignment, String what) {
        // The emulator tolerates misaligned loads; a GPU faults on them and loses its context.
        if (buffer.address() % alignment != 0) {
            throw new IllegalArgumentException(what + " at 0x" + Long.toHexString(buffer.address())
                    + " is not aligned to " + alignment + " bytes");
        }
        if (buffer.byteSize() < bytes) {
            throw new IllegalArgumentException(what + " has " + buffer.byteSize() + " bytes, needs " + bytes);
        }
        long address = buffer.address();
        Map.Entry<Long, Long> a = allocations.floorEntry(address);
        if (a == null || address + Math.max(bytes, 1) > a.getKey() + a.getValue()) {
            throw new IllegalArgumentException(what + " (0x" + Long.toHexString(address) + ", " + bytes
                    + " bytes) is not device memory of this backend: allocate it with allocate() or upload()");
        }
        return address;
    }

    long requireWeight(WeightTensor w, String what) {
        // ggml blocks hold fp16 fields at even offsets; F32 rows need 4-byte alignment
        int alignment = w.type() == GgmlType.F32 ? 4 : 2;
        return requireDevice(w.data(), w.rowBytes() * w.rows(), alignment, what + " " + w.name());
    }

    @Override
    public WeightTensor upload(WeightTensor host) {
        requireOpen();
        if (!Kernels.WEIGHT_SUFFIX.containsKey(host.type())) {
            // Refused here, at load, rather than miscomputed later: e.g. the Q5_0/Q5_1/IQ4_NL/Q2_K/Q3_K/Q5_K
            // tensors of llama-quantize's K mixes have CPU kernels only.
            throw new IllegalArgumentException("cannot upload " + host + ": the CUDA backend has no kernels for "
                    + host.type() + " (supported: " + Kernels.WEIGHT_SUFFIX.keySet() + "); the CPU backend runs "
                    + host.type() + " (--backend cpu)");
        }
        long bytes = host.type().bytesFor(host.elements());
        if (host.data().byteSize() < bytes) {
            throw new IllegalArgumentException(host + " holds " + host.data().byteSize() + " bytes, its shape needs " + bytes);
        }
        MemorySegment d = allocateUninitialised(bytes);
        device.copyToDevice(host.data(), d.address(), bytes);
        return new WeightTensor(host.name(), host.type(), host.shape(), d);
    }

    @Override
    public void copyFromHost(MemorySegment host, MemorySegment dst) {
        requireOpen();
        long bytes = host.byteSize();
        device.copyToDevice(host, requireDevice(dst, bytes, "copyFromHost destination"), bytes);
    }

    @Override
    public void copyToHost(MemorySegment src, MemorySegment host) {
        requireOpen();
        long bytes = host.byteSize();
        device.copyToHost(requireDevice(src, bytes, "copyToHost source"), host, bytes);
    }

    /** Device-to-device copy of {@code bytes} (queued). */
    public void copy(MemorySegment src, MemorySegment dst, long bytes) {
        copy(src, 0, dst, 0, bytes);
    }

    @Override
    public void copy(MemorySegment src, long srcOffset, MemorySegment dst, long dstOffset, long bytes) {
        requireOpen();
        MemorySegment s = src.asSlice(srcOffset, bytes), d = dst.asSlice(dstOffset, bytes);
        device.copyOnDevice(requireDevice(s, bytes, "copy source"), requireDevice(d, bytes, "copy destination"), bytes);
    }

    // ------------------------------------------------------------------ ops

    @Override
    public void matmul(WeightTensor w, MemorySegment x, MemorySegment out, int batch) {
        requireOpen();
        if (batch <= 0) throw new IllegalArgumentException("matmul batch " + batch);
        long wp = requireWeight(w, "matmul weight");
        long xp = requireDevice(x, 4L * batch * w.cols(), "matmul input");
        long op = requireDevice(out, 4L * batch * w.rows(), "matmul output");
        KernelArgs args = new KernelArgs().ptr(wp).ptr(xp).ptr(op).i32(w.cols()).i32(w.rows()).i32(batch)
                .i64(w.rowBytes());
        if (batch <= Kernels.MATVEC_BATCH_PER_BLOCK) {
            kernels.launch(Kernels.matvec(w.type()), ceilDiv(w.rows(), Kernels.MATVEC_ROWS_PER_BLOCK), 1, 1, args);
        } else {
            kernels.launch(Kernels.matmat(w.type()), ceilDiv(w.rows(), Kernels.MATMAT_TILE),
                    ceilDiv(batch, Kernels.MATMAT_TILE), 1, args);
        }
    }

    @Override
    public void rmsnorm(MemorySegment out, MemorySegment x, WeightTensor weight, int dim, int batch, float eps) {
        requireOpen();
        requireF32(weight, dim, "rmsnorm weight");
        long bytes = 4L * dim * batch;
        KernelArgs args = new KernelArgs().ptr(requireDevice(out, bytes, "rmsnorm output"))
                .ptr(requireDevice(x, bytes, "rmsnorm input")).ptr(requireWeight(weight, "rmsnorm weight"))
                .i32(dim).f32(eps);
        kernels.launch(Kernels.RMSNORM, batch, 1, 1, args);
    }

    @Override
    public void rope(MemorySegment x, int[] positions, int heads, int headDim, RopeConfig rope, int batch) {
        requireOpen();
        if (positions.length < batch) {
            throw new IllegalArgumentException("rope: " + positions.length + " positions for " + batch + " rows");
        }
        if (rope.dims() <= 0 || rope.dims() > headDim || rope.dims() % 2 != 0) {
            throw new IllegalArgumentException("rope: " + rope.dims() + " rotated dims in heads of " + headDim);
        }
        for (int b = 0; b < batch; b++) {
            if (positions[b] < 0) throw new IllegalArgumentException("rope: negative position " + positions[b]);
        }
        long xp = requireDevice(x, 4L * batch * heads * headDim, "rope input");
        MemorySegment pos = uploadInts("rope.positions", positions, batch);
        KernelArgs args = new KernelArgs().ptr(xp).ptr(pos).i32(heads).i32(headDim).i32(rope.dims())
                .f32(rope.freqBase()).f32(rope.freqScale()).i32(rope.neox() ? 1 : 0);
        kernels.launch(Kernels.ROPE, batch, 1, 1, args);
    }

    @Override
    public void siluMul(MemorySegment gate, MemorySegment up, int dim, int batch) {
        requireOpen();
        long n = (long) dim * batch;
        KernelArgs args = new KernelArgs().ptr(requireDevice(gate, 4 * n, "siluMul gate"))
                .ptr(requireDevice(up, 4 * n, "siluMul up")).i64(n);
        kernels.launch(Kernels.SILU_MUL, elementwiseBlocks(n), 1, 1, args);
    }

    @Override
    public void add(MemorySegment acc, MemorySegment x, long n) {
        requireOpen();
        if (n < 0) throw new IllegalArgumentException("add of " + n + " values");
        KernelArgs args = new KernelArgs().ptr(requireDevice(acc, 4 * n, "add accumulator"))
                .ptr(requireDevice(x, 4 * n, "add input")).i64(n);
        kernels.launch(Kernels.ADD, elementwiseBlocks(n), 1, 1, args);
    }

    @Override
    public void addBias(MemorySegment x, WeightTensor bias, int dim, int batch) {
        requireOpen();
        requireF32(bias, dim, "bias");
        long n = (long) dim * batch;
        KernelArgs args = new KernelArgs().ptr(requireDevice(x, 4 * n, "addBias input"))
                .ptr(requireWeight(bias, "bias")).i32(dim).i64(n);
        kernels.launch(Kernels.ADD_BIAS, elementwiseBlocks(n), 1, 1, args);
    }

    @Override
    public void embed(WeightTensor table, int[] tokens, MemorySegment out) {
        requireOpen();
        if (tokens.length == 0) return;
        for (int t : tokens) {
            if (t < 0 || t >= table.rows()) {
                throw new IllegalArgumentException("token id " + t + " outside the " + table.rows() + " rows of " + table.name());
            }
        }
        long tp = requireWeight(table, "embedding table");
        long op = requireDevice(out, 4L * tokens.length * table.cols(), "embed output");
        MemorySegment ids = uploadInts("embed.tokens", tokens, tokens.length);
        KernelArgs args = new KernelArgs().ptr(tp).ptr(ids).ptr(op).i32(table.cols()).i64(table.rowBytes());
        kernels.launch(Kernels.embed(table.type()), tokens.length, 1, 1, args);
    }

    @Override
    public void softmax(MemorySegment x, int dim, int batch) {
        requireOpen();
        KernelArgs args = new KernelArgs().ptr(requireDevice(x, 4L * dim * batch, "softmax input")).i32(dim);
        kernels.launch(Kernels.SOFTMAX, batch, 1, 1, args);
    }

    // ------------------------------------------------------------------ sampling helpers

    /** Index of the largest logit of each of {@code rows} rows of {@code n} (greedy decoding); waits. */
    public int[] argmax(MemorySegment logits, int n, int rows) {
        requireOpen();
        if (n <= 0 || rows <= 0) throw new IllegalArgumentException("argmax over " + rows + " rows of " + n);
        MemorySegment out = scratch("argmax.out", 4L * rows);
        kernels.launch(Kernels.ARGMAX, rows, 1, 1,
                new KernelArgs().ptr(requireDevice(logits, 4L * n * rows, "argmax input")).i32(n).ptr(out));
        int[] result = new int[rows];
        copyInts(out, result);
        return result;
    }

    /** The k best entries per row, best first (ties to the lower index; NaN never chosen). */
    public record TopK(int rows, int k, int[] indices, float[] values) {

        public int index(int row, int i) {
            return indices[row * k + i];
        }

        public float value(int row, int i) {
            return values[row * k + i];
        }
    }

    /** Top {@code k} of each of {@code rows} rows of {@code n} scores, copied to the host; waits. */
    public TopK topK(MemorySegment scores, int n, int k, int rows) {
        MemorySegment idx = scratch("topk.index", 4L * rows * k), val = scratch("topk.value", 4L * rows * k);
        topKOnDevice(scores, n, k, rows, idx, val);
        int[] indices = new int[rows * k];
        float[] values = new float[rows * k];
        copyInts(idx, indices);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment h = a.allocate(JAVA_FLOAT, (long) rows * k);
            device.copyToHost(val.address(), h, h.byteSize());
            MemorySegment.copy(h, JAVA_FLOAT, 0, values, 0, values.length);
        }
        return new TopK(rows, k, indices, values);
    }

    /**
     * Top {@code k} of each row into device buffers ({@code [rows][k]} int32 indices and float
     * values; a row with fewer than k non-NaN entries ends in -1 / -inf). Queued.
     */
    public void topKOnDevice(MemorySegment scores, int n, int k, int rows, MemorySegment outIndex, MemorySegment outValue) {
        requireOpen();
        if (n <= 0 || rows <= 0 || k <= 0 || k > n) {
            throw new IllegalArgumentException("top-" + k + " of " + rows + " rows of " + n);
        }
        KernelArgs args = new KernelArgs().ptr(requireDevice(scores, 4L * n * rows, "topK input")).i32(n).i32(k)
                .ptr(requireDevice(outIndex, 4L * rows * k, "topK indices"))
                .ptr(requireDevice(outValue, 4L * rows * k, "topK values"));
        kernels.launch(Kernels.TOPK, rows, 1, 1, args);
    }

    // ------------------------------------------------------------------ lifecycle

    @Override
    public void synchronize() {
        requireOpen();
        device.synchronize();
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        try {
            device.synchronize();
            for (long ptr : allocations.keySet()) device.free(ptr);
            allocations.clear();
        } finally {
            device.close();
            arena.close();
        }
    }

    // ------------------------------------------------------------------ helpers shared with CudaKvKernels

    KernelRunner kernels() {
        return kernels;
    }

    void requireOpen() {
        if (closed) throw new IllegalStateException("the CUDA backend is closed");
    }

    /** A device buffer of at least {@code bytes} kept under {@code name}; contents undefined. */
    MemorySegment scratch(String name, long bytes) {
        Scratch s = scratch.get(name);
        if (s == null || s.buffer.byteSize() < bytes) {
            if (s != null) free(s.buffer);
            s = new Scratch(allocateUninitialised(Math.max(bytes, 256)));
            scratch.put(name, s);
        }
        return s.buffer.asSlice(0, bytes);
    }

    private record Scratch(MemorySegment buffer) {}

    /** The first {@code count} values of {@code values} in a device buffer named {@code name}. */
    MemorySegment uploadInts(String name, int[] values, int count) {
        IntUpload u = intUploads.get(name);
        if (u != null && u.count == count && Arrays.equals(u.values, 0, count, values, 0, count)) {
            return u.buffer;
        }
        MemorySegment buffer = scratch("ints." + name, 4L * Math.max(count, 1));
        MemorySegment host = staging(4L * count);
        MemorySegment.copy(values, 0, host, JAVA_INT, 0, count);
        device.copyToDevice(host, buffer.address(), 4L * count);
        intUploads.put(name, new IntUpload(Arrays.copyOf(values, count), count, buffer));
        return buffer;
    }

    private record IntUpload(int[] values, int count, MemorySegment buffer) {}

    void copyInts(MemorySegment deviceInts, int[] into) {
        MemorySegment host = staging(4L * into.length);
        device.copyToHost(deviceInts.address(), host, 4L * into.length);
        MemorySegment.copy(host, JAVA_INT, 0, into, 0, into.length);
    }

    private MemorySegment staging(long bytes) {
        if (hostStaging.byteSize() < bytes) hostStaging = arena.allocate(Math.max(bytes, 4096), 16);
        return hostStaging.asSlice(0, bytes);
    }

    private static void requireF32(WeightTensor w, int dim, String what) {
        if (w.type() != GgmlType.F32) throw new IllegalArgumentException(what + " " + w.name() + " must be F32, is " + w.type());
        if (w.elements() < dim) throw new IllegalArgumentException(what + " " + w.name() + " has " + w.elements() + " values, needs " + dim);
    }

    static int ceilDiv(long a, long b) {
        return Math.toIntExact((a + b - 1) / b);
    }

    private static int elementwiseBlocks(long n) {
        return (int) Math.max(1, Math.min((n + 255) / 256, 1 << 16));
    }
}
