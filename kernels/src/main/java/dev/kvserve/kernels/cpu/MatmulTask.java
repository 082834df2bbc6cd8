package dev.kvserve.kernels.cpu;

import java.lang.foreign.MemorySegment;

/**
 * One matmul, split into chunks of consecutive weight rows for {@link CpuThreadPool}. Reused for
 * every call (fields are overwritten), so the hot path allocates nothing.
 *
 * <p>Order of work inside a chunk, for batch > 1: activation rows are taken in groups that fit
 * in L2 ({@link #xGroup} rows); for each group every weight row of the chunk is read once and
 * dotted with the group four activation rows at a time. A weight row therefore crosses the memory
 * bus once per group (once in all for decode-sized batches), and the activations it meets are hot
 * in cache. Small groups use the fused {@link WeightKernel#dot4}, which shares one decode among
 * four rows; groups of {@value #TILE_MIN_ROWS} or more decode four (or two) weight rows at a time
 * into L1 tiles ({@link WeightKernel#decodeRow}) and run them against the group's rows four at a
 * time ({@link #runTiled}): each activation vector loaded from L2 then serves several weight rows.
 */
final class MatmulTask implements CpuThreadPool.Task {
    /** Bytes of activations a group may take: half of a 1 MiB L2, leaving room for weights. */
    private static final int GROUP_BYTES = 512 * 1024;
    /**
     * From this many activation rows in a group on, a weight row is decoded once into a float
     * tile and every row of the group is run against the tile; below it, the fused four-row
     * kernels (which decode once per four rows but skip the tile's store and reload) win.
     */
    private static final int TILE_MIN_ROWS = 16;
    /** Whether the registers hold {@link TileKernel#dot4x4}'s sixteen accumulators (AVX-512). */
    private static final boolean QUAD_TILES = Vec.FL >= 16;
    private static final ThreadLocal<float[][]> TILES = ThreadLocal.withInitial(() -> new float[4][0]);

    WeightKernel kernel;
    MemorySegment weights;
    long rowBytes;
    int rows;
    int cols;
    int batch;
    float[] x;
    float[] xSums;
    MemorySegment out;
    int chunkRows;
    int xGroup;

    void set(WeightKernel kernel, MemorySegment weights, long rowBytes, int rows, int cols, int batch,
             float[] x, float[] xSums, MemorySegment out, int chunkRows) {
        this.kernel = kernel;
        this.weights = weights;
        this.rowBytes = rowBytes;
        this.rows = rows;
        this.cols = cols;
        this.batch = batch;
        this.x = x;
        this.xSums = xSums;
        this.out = out;
        this.chunkRows = chunkRows;
        int fit = Math.max(4, GROUP_BYTES / (cols * Float.BYTES) / 4 * 4);
        this.xGroup = Math.min(batch, fit);
    }

    void clear() {
        weights = null;
        x = null;
        xSums = null;
        out = null;
    }

    @Override
    public void run(int chunk) {
        int r0 = chunk * chunkRows;
        int r1 = Math.min(rows, r0 + chunkRows);
        WeightKernel k = kernel;
        MemorySegment w = weights;
        float[] xs = x;
        float[] sums = xSums;
        int sumsStride = cols / 32;
        if (batch == 1) {
            for (int r = r0; r < r1; r++) {
                out.setAtIndex(Vec.F32, r, k.dot(w, r * rowBytes, xs, 0, sums, 0, cols));
            }
            return;
        }
        for (int g0 = 0; g0 < batch; g0 += xGroup) {
            int g1 = Math.min(batch, g0 + xGroup);
            if (g1 - g0 >= TILE_MIN_ROWS) {
                runTiled(r0, r1, g0, g1);
                continue;
            }
            for (int r = r0; r < r1; r++) {
                long rowOffset = r * rowBytes;
                int b = g0;
                for (; b + 4 <= g1; b += 4) {
                    k.dot4(w, rowOffset, xs, b * cols, cols, sums, b * sumsStride, sumsStride, cols,
                            out, (long) b * rows + r, rows);
                }
                for (; b < g1; b++) {
                    out.setAtIndex(Vec.F32, (long) b * rows + r,
                            k.dot(w, rowOffset, xs, b * cols, sums, b * sumsStride, cols));
                }
            }
        }
    }

    /**
     * Weight rows r0..r1 against activation rows g0..g1 through decoded tiles: four weight rows at
     * a time where the vectors allow 16 accumulators (AVX-512's 32 registers; {@link
     * TileKernel#dot4x4}: eight loads per sixteen FMAs), then pairs ({@link TileKernel#dot2x4}),
     * then single rows; four activation rows at a time, then single ones.
     */
    private void runTiled(int r0, int r1, int g0, int g1) {
        WeightKernel k = kernel;
        float[] xs = x;
        float[][] t = TILES.get();
        int r = r0;
        for (int n = QUAD_TILES && cols % Vec.FL == 0 ? 4 : 2; n >= 1; n /= 2) {
            for (int i = 0; i < n; i++) if (t[i].length < cols) t[i] = new float[cols];
            for (; r + n <= r1; r += n) {
                for (int i = 0; i < n; i++) k.decodeRow(weights, (r + i) * rowBytes, t[i], cols);
                int b = g0;
                for (; b + 4 <= g1; b += 4) {
                    long o = (long) b * rows + r;
                    switch (n) {
                        case 4 -> TileKernel.dot4x4(t[0], t[1], t[2], t[3], xs, b * cols, cols, cols, out, o, rows);
                        case 2 -> TileKernel.dot2x4(t[0], t[1], xs, b * cols, cols, cols, out, o, rows);
                        default -> TileKernel.dot4(t[0], xs, b * cols, cols, cols, out, o, rows);
                    }
                }
                for (; b < g1; b++) {
                    for (int i = 0; i < n; i++) {
                        out.setAtIndex(Vec.F32, (long) b * rows + r + i, TileKernel.dot(t[i], xs, b * cols, cols));
                    }
                }
            }
        }
    }
}
