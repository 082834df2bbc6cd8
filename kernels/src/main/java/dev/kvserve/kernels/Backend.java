package dev.kvserve.kernels;

import java.lang.foreign.MemorySegment;

/**
 * The op set of the decoder, implemented once for the CPU (Vector API) and once for CUDA.
 *
 * <p>Buffers are {@link MemorySegment}s obtained from {@link #allocate}: host memory on the CPU
 * backend, device memory on the CUDA backend (a segment whose address is a device pointer and that
 * Java never dereferences). Activations are row-major F32: a "batch" of {@code n} rows of
 * {@code dim} floats is {@code n * dim * 4} contiguous bytes. Weights come from {@link #upload}.
 * Calls on one backend are issued from one thread at a time and execute in order.
 */
public interface Backend extends AutoCloseable {

    String name();

    /** Zeroed F32-aligned buffer of {@code bytes}, valid until the backend is closed. */
    MemorySegment allocate(long bytes);

    /** This backend's copy of a host weight tensor (the CPU returns it as is). */
    WeightTensor upload(WeightTensor host);

    /** Copies {@code host} (host memory) into the backend buffer {@code dst} at byte 0. */
    void copyFromHost(MemorySegment host, MemorySegment dst);

    /** Copies the backend buffer {@code src} into {@code host} (host memory). */
    void copyToHost(MemorySegment src, MemorySegment host);

    /** Copies {@code bytes} between two buffers of this backend (device to device on CUDA). */
    void copy(MemorySegment src, long srcOffset, MemorySegment dst, long dstOffset, long bytes);

    /** {@code out[b][r] = Σ_c w[r][c] · x[b][c]} for b < batch; x is [batch][w.cols()], out [batch][w.rows()]. */
    void matmul(WeightTensor w, MemorySegment x, MemorySegment out, int batch);

    /** out[b] = x[b] / rms(x[b]) * weight, rows of {@code dim}; weight is an F32 tensor; out may be x. */
    void rmsnorm(MemorySegment out, MemorySegment x, WeightTensor weight, int dim, int batch, float eps);

    /** Rotates each of {@code heads} heads (of {@code headDim}) in row b at position {@code positions[b]}. */
    void rope(MemorySegment x, int[] positions, int heads, int headDim, RopeConfig rope, int batch);

    /** gate[b][i] = silu(gate[b][i]) · up[b][i] for rows of {@code dim}. */
    void siluMul(MemorySegment gate, MemorySegment up, int dim, int batch);

    /** acc[i] += x[i] for i < n. */
    void add(MemorySegment acc, MemorySegment x, long n);

    /** x[b][i] += bias[i]: bias is an F32 tensor of {@code dim}. */
    void addBias(MemorySegment x, WeightTensor bias, int dim, int batch);

    /** out[b] = row {@code tokens[b]} of the embedding table, as F32. */
    void embed(WeightTensor table, int[] tokens, MemorySegment out);

    /** Numerically stable softmax of each row of {@code dim}, in place. */
    void softmax(MemorySegment x, int dim, int batch);

    /** Blocks until every issued op has finished (no-op on the CPU). */
    void synchronize();

    @Override
    void close();
}
