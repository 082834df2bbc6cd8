package dev.kvserve.kernels.cpu;

import dev.kvserve.kernels.GgmlQuantize;
import dev.kvserve.kernels.GgmlType;
import java.lang.foreign.MemorySegment;

/** Decode-then-dot fallback for machines whose vectors are too narrow for the fused kernels. */
final class ScalarWeightKernel extends WeightKernel {
    private final GgmlType type;
    private final ThreadLocal<float[][]> rowBuffer = ThreadLocal.withInitial(() -> new float[1][0]);

    ScalarWeightKernel(GgmlType type) {
        this.type = type;
    }

    private float[] decode(MemorySegment w, long rowOffset, int cols) {
        float[][] holder = rowBuffer.get();
        if (holder[0].length < cols) holder[0] = new float[cols];
        GgmlQuantize.dequantizeRow(type, w, rowOffset, holder[0], 0, cols);
        return holder[0];
    }

    @Override
    float dot(MemorySegment w, long rowOffset, float[] x, int xOffset, float[] xSums, int sumsOffset, int cols) {
        float[] row = decode(w, rowOffset, cols);
        float sum = 0;
        for (int c = 0; c < cols; c++) sum += row[c] * x[xOffset + c];
        return sum;
    }

    @Override
    void dot4(MemorySegment w, long rowOffset, float[] x, int xOffset, int xStride, float[] xSums, int sumsOffset,
              int sumsStride, int cols, MemorySegment out, long outIndex, long outStride) {
        float[] row = decode(w, rowOffset, cols);
        for (int k = 0; k < 4; k++) {
            float sum = 0;
            int xo = xOffset + k * xStride;
            for (int c = 0; c < cols; c++) sum += row[c] * x[xo + c];
            out.setAtIndex(Vec.F32, outIndex + k * outStride, sum);
        }
    }

    @Override
    void decodeRow(MemorySegment w, long rowOffset, float[] dst, int cols) {
        GgmlQuantize.dequantizeRow(type, w, rowOffset, dst, 0, cols);
    }
}
