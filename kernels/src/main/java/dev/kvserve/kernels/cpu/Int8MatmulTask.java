package dev.kvserve.kernels.cpu;

import dev.kvserve.nativ.cpu.CpuKernels;
import java.lang.foreign.MemorySegment;

/**
 * One Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 or Q4_K matmul on the int8 kernels of {@link CpuKernels}, split into chunks of
 * consecutive weight rows like {@link MatmulTask}. The activations were quantized once by the
 * caller; each chunk is one native call per group of activation rows that fits in L2, so the
 * weight rows of the chunk cross the memory bus once per group (once in all for decode).
 *
 * <p>Uploaded weights ({@link CpuBackend#upload}), repacked at their first matmul, are read in
 * their packed form for the first {@code 8·groups} rows; chunks then hold whole groups of eight
 * rows, and any last rows beyond the groups run on the plain kernel over the original bytes.
 */
final class Int8MatmulTask implements CpuThreadPool.Task {
    /** Bytes of quantized activations (and their run sums) a group may take: half of a 1 MiB L2. */
    private static final int GROUP_BYTES = 512 * 1024;

    private final CpuKernels kernels;
    /** ggml type id of the weights ({@link CpuKernels#supports}). */
    private int type;
    private MemorySegment weights;
    /** The weights repacked by eight rows ({@link CpuKernels#repackX8}), or null. */
    private MemorySegment packed;
    /** Rows read from {@link #packed}: every whole group of eight, or none. */
    private int packedRows;
    private long rowBytes;
    private int rows;
    private int cols;
    private int batch;
    private MemorySegment xq;
    private MemorySegment xd;
    private MemorySegment xs;
    private MemorySegment out;
    private int chunkRows;
    private int xGroup;

    Int8MatmulTask(CpuKernels kernels) {
        this.kernels = kernels;
    }

    /** {@code packed}: the weights' whole groups of eight rows repacked, or null; chunkRows a multiple of 8 then. */
    void set(int type, MemorySegment weights, MemorySegment packed, long rowBytes, int rows, int cols,
             int batch, MemorySegment xq, MemorySegment xd, MemorySegment xs, MemorySegment out, int chunkRows) {
        this.type = type;
        this.weights = weights;
        this.packed = packed;
        this.packedRows = packed == null ? 0 : rows / 8 * 8;
        this.rowBytes = rowBytes;
        this.rows = rows;
        this.cols = cols;
        this.batch = batch;
        this.xq = xq;
        this.xd = xd;
        this.xs = xs;
        this.out = out;
        this.chunkRows = chunkRows;
        this.xGroup = Math.min(batch, Math.max(4, GROUP_BYTES / (2 * cols) / 4 * 4));
    }

    void clear() {
        weights = packed = null;
        xq = xd = xs = out = null;
    }

    @Override
    public void run(int chunk) {
        int r0 = chunk * chunkRows;
        int r1 = Math.min(rows, r0 + chunkRows);
        int split = Math.clamp(packedRows, r0, r1);   // rows [r0, split) packed, [split, r1) plain
        for (int b0 = 0; b0 < batch; b0 += xGroup) {
            int n = Math.min(batch, b0 + xGroup) - b0;
            MemorySegment q = xq.asSlice(CpuKernels.quantsBytes(b0, cols));
            MemorySegment d = xd.asSlice(CpuKernels.scalesBytes(type, b0, cols));
            MemorySegment s = xs.asSlice(CpuKernels.sumsBytes(type, b0, cols));
            if (split > r0) {
                kernels.matmulX8(type, packed.asSlice(CpuKernels.packedBytes(type, r0 / 8, cols)), (split - r0) / 8,
                        q, d, s, cols, n, out.asSlice(((long) b0 * rows + r0) * Float.BYTES), rows);
            }
            if (r1 > split) {
                kernels.matmul(type, weights.asSlice(split * rowBytes), rowBytes, r1 - split, q, d, s, cols, n,
                        out.asSlice(((long) b0 * rows + split) * Float.BYTES), rows);
            }
        }
    }
}
