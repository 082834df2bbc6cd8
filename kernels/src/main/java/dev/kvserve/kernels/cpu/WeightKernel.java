package dev.kvserve.kernels.cpu;

import dev.kvserve.kernels.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * Fused dequantize-and-dot for one weight storage type: weights are decoded in registers, a
 * vector at a time, straight from the (usually memory-mapped) weight bytes and never written
 * back, so a matmul reads every weight byte exactly once per call.
 *
 * <p>{@link #dot} serves batch 1 (decode); {@link #dot4} serves batches: one decoded weight vector
 * is multiplied into four activation rows, so the decode work and the weight traffic are shared
 * by four rows (see {@link MatmulTask} for how rows are tiled).
 */
abstract class WeightKernel {

    /**
     * Σ_c w[c] · x[xOffset + c] over the {@code cols} values of the weight row at byte
     * {@code rowOffset}. {@code xSums} holds Σ of each run of 32 activations ({@code sumsOffset}
     * is the index of the row's first run); only kernels with per-block minima use it.
     */
    abstract float dot(MemorySegment w, long rowOffset, float[] x, int xOffset,
                       float[] xSums, int sumsOffset, int cols);

    /**
     * The dot of one weight row with four activation rows (x at {@code xOffset + k*xStride},
     * sums at {@code sumsOffset + k*sumsStride}), written to {@code out} at float index
     * {@code outIndex + k*outStride} for k < 4.
     */
    abstract void dot4(MemorySegment w, long rowOffset, float[] x, int xOffset, int xStride,
                       float[] xSums, int sumsOffset, int sumsStride, int cols,
                       MemorySegment out, long outIndex, long outStride);

    /**
     * Decodes the {@code cols} values of the weight row at byte {@code rowOffset} into
     * {@code dst[0..cols)}. Large batches decode a row once into this L1-resident tile and run
     * every activation row against it ({@link TileKernel}), instead of decoding it again for
     * every four rows.
     */
    abstract void decodeRow(MemorySegment w, long rowOffset, float[] dst, int cols);

    /** Whether {@link #dot} reads {@code xSums}. */
    boolean needsSums() {
        return false;
    }

    private static final WeightKernel F32 = new F32Kernel();
    private static final WeightKernel F16 = new F16Kernel();
    private static final WeightKernel BF16 = new Bf16Kernel();
    private static final WeightKernel Q8_0 = Vec.QUANT_OK ? new Q8_0Kernel() : new ScalarWeightKernel(GgmlType.Q8_0);
    private static final WeightKernel Q4_0 = Vec.QUANT_OK ? new Q4_0Kernel() : new ScalarWeightKernel(GgmlType.Q4_0);
    private static final WeightKernel Q4_K = Vec.QUANT_OK ? new Q4_KKernel() : new ScalarWeightKernel(GgmlType.Q4_K);
    private static final WeightKernel Q6_K = Vec.QUANT_OK ? new Q6_KKernel() : new ScalarWeightKernel(GgmlType.Q6_K);
    private static final WeightKernel Q4_1 = Vec.QUANT_OK ? new Q4_1Kernel() : new ScalarWeightKernel(GgmlType.Q4_1);
    private static final WeightKernel Q5_0 = Vec.QUANT_OK ? new Q5_0Kernel() : new ScalarWeightKernel(GgmlType.Q5_0);
    private static final WeightKernel Q5_1 = Vec.QUANT_OK ? new Q5_1Kernel() : new ScalarWeightKernel(GgmlType.Q5_1);
    private static final WeightKernel IQ4_NL = Vec.QUANT_OK ? new Iq4_NlKernel() : new ScalarWeightKernel(GgmlType.IQ4_NL);
    private static final WeightKernel Q2_K = Vec.QUANT_OK ? new Q2_KKernel() : new ScalarWeightKernel(GgmlType.Q2_K);
    private static final WeightKernel Q3_K = Vec.QUANT_OK ? new Q3_KKernel() : new ScalarWeightKernel(GgmlType.Q3_K);
    private static final WeightKernel Q5_K = Vec.QUANT_OK ? new Q5_KKernel() : new ScalarWeightKernel(GgmlType.Q5_K);
    private static final WeightKernel F16_SCALAR = new ScalarWeightKernel(GgmlType.F16);
    private static final WeightKernel BF16_SCALAR = new ScalarWeightKernel(GgmlType.BF16);

    static WeightKernel of(GgmlType type) {
        return switch (type) {
            case F32 -> F32;
            case F16 -> Vec.QUANT_OK ? F16 : F16_SCALAR;
            case BF16 -> Vec.QUANT_OK ? BF16 : BF16_SCALAR;
            case Q8_0 -> Q8_0;
            case Q4_0 -> Q4_0;
            case Q4_K -> Q4_K;
            case Q6_K -> Q6_K;
            case Q4_1 -> Q4_1;
            case Q5_0 -> Q5_0;
            case Q5_1 -> Q5_1;
            case IQ4_NL -> IQ4_NL;
            case Q2_K -> Q2_K;
            case Q3_K -> Q3_K;
            case Q5_K -> Q5_K;
            default -> throw new IllegalArgumentException("no CPU kernel for weight type " + type);
        };
    }
}
