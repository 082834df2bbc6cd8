package dev.kvserve.kernels.cpu;

import dev.kvserve.nativ.cpu.CpuKernels;
import java.lang.foreign.MemorySegment;

/**
 * One Q8_0 or Q4_0 matmul on the int8 kernels of {@link CpuKernels}, split into chunks of
 * consecutive weight rows like {@link MatmulTask}. The activations were quantized once by the
 * caller; each chunk is one native call per group of activation rows that fits in L2, so the
 * weight rows of the chunk cross the memory bus once per group (once in all for decode).
 */
final class Int8MatmulTask implements CpuThreadPool.Task {
    /** Bytes of quantized activations (and their run sums) a group may take: half of a 1 MiB L2. */
    private static final int GROUP_BYTES = 512 * 1024;

    private final CpuKernels kernels;
    private boolean q4_0;
    private MemorySegment weights;
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

    void set(boolean q4_0, MemorySegment weights, long rowBytes, int rows, int cols, int batch,
             MemorySegment xq, MemorySegment xd, MemorySegment xs, MemorySegment out, int chunkRows) {
        this.q4_0 = q4_0;
        this.weights = weights;
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
        weights = null;
        xq = xd = xs = out = null;
    }

    @Override
    public void run(int chunk) {
        int r0 = chunk * chunkRows;
        int n = Math.min(rows, r0 + chunkRows) - r0;
        MemorySegment w = weights.asSlice(r0 * rowBytes);
        for (int g0 = 0; g0 < batch; g0 += xGroup) {
            int g = Math.min(batch, g0 + xGroup) - g0;
            kernels.matmul(q4_0, w, rowBytes, n,
                    xq.asSlice(CpuKernels.quantsBytes(g0, cols)), xd.asSlice(CpuKernels.scalesBytes(g0, cols)),
                    xs.asSlice(CpuKernels.sumsBytes(g0, cols)), cols, g,
                    out.asSlice(((long) g0 * rows + r0) * Float.BYTES), rows);
        }
    }
}
