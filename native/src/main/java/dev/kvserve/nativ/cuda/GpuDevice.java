package dev.kvserve.nativ.cuda;

import java.lang.foreign.MemorySegment;

/**
 * What the CUDA backend needs from a device: memory, copies, kernel lookup and launches, all in
 * order on one stream. {@link CudaDevice} is a real GPU through the driver API;
 * {@link EmulatedDevice} runs the same kernels, compiled for the host, on the CPU (tests).
 *
 * <p>Device memory is addressed by {@code long} device pointers that Java never dereferences.
 * Host memory is any {@link MemorySegment} (heap segments are bounced through native memory).
 */
public interface GpuDevice extends AutoCloseable {

    /** Human-readable name of the device (for logs). */
    String description();

    /** Uninitialised device memory of {@code bytes} (> 0), aligned to at least 256 bytes. */
    long allocate(long bytes);

    void free(long devicePointer);

    /** Copies {@code bytes} from {@code host} to {@code dst}; {@code host} may be reused once this returns. */
    void copyToDevice(MemorySegment host, long dst, long bytes);

    /** Copies {@code bytes} from {@code src} into {@code host}; complete when this returns. */
    void copyToHost(long src, MemorySegment host, long bytes);

    void copyOnDevice(long src, long dst, long bytes);

    void fill(long dst, byte value, long bytes);

    /** The kernel {@code entry} of PTX module {@code module} (see {@link PtxLibrary#MODULES}). */
    GpuFunction function(String module, String entry);

    /**
     * Enqueues a launch of {@code function} with 1-D..3-D grid and block sizes and the packed
     * {@code params} ({@link KernelArgs#pack}); no dynamic shared memory.
     */
    void launch(GpuFunction function, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ,
                MemorySegment params);

    /** Waits until every enqueued copy and launch has finished. */
    void synchronize();

    @Override
    void close();

    /** A resolved kernel; {@code handle} means something only to the device that returned it. */
    record GpuFunction(String module, String entry, long handle) {}
}
