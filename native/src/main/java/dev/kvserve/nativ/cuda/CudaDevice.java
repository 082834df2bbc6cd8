package dev.kvserve.nativ.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.Map;

/**
 * One GPU through the driver API: its primary context, one non-blocking stream on which every copy
 * and launch is queued in order, and the PTX modules of the device's architecture, loaded on first
 * use. The context is made current on whichever thread calls (the driver's current context is
 * per thread), so a device may be handed from thread to thread as long as one uses it at a time.
 */
public final class CudaDevice implements GpuDevice {

    private static final ThreadLocal<Long> CURRENT_CONTEXT = ThreadLocal.withInitial(() -> 0L);

    private final CudaDriver driver;
    private final int device;
    private final long context;
    private final long stream;
    private final String arch;
    private final String description;
    private final Map<String, Long> modules = new HashMap<>();
    private final Map<String, GpuFunction> functions = new HashMap<>();
    private boolean closed;

    private CudaDevice(CudaDriver driver, int device, int computeCapability, String description) {
        this.driver = driver;
        this.device = device;
        this.context = driver.primaryContextRetain(device);
        this.arch = PtxLibrary.archFor(computeCapability);
        this.description = description;
        long s;
        try {
            makeCurrent();
            s = driver.streamCreate(CudaDriver.CU_STREAM_NON_BLOCKING);
        } catch (RuntimeException e) {
            driver.primaryContextRelease(device);
            throw e;
        }
        this.stream = s;
    }

    /** Opens the device a successful probe found. */
    public static CudaDevice open(Cuda.Probe probe) {
        if (!probe.available()) {
            throw new IllegalStateException("CUDA is not available: " + probe.description());
        }
        CudaDriver d = probe.driver();
        return new CudaDevice(d, d.device(probe.device()), probe.computeCapability(), probe.description());
    }

    public CudaDriver driver() {
        return driver;
    }

    /** sm_80 or sm_90: which PTX build this device loads. */
    public String arch() {
        return arch;
    }

    @Override
    public String description() {
        return description;
    }

    private void makeCurrent() {
        if (closed) throw new IllegalStateException("CUDA device " + description + " is closed");
        if (CURRENT_CONTEXT.get() != context) {
            driver.setCurrentContext(context);
            CURRENT_CONTEXT.set(context);
        }
    }

    @Override
    public long allocate(long bytes) {
        if (bytes <= 0) throw new IllegalArgumentException("device allocation of " + bytes + " bytes");
        makeCurrent();
        return driver.memAlloc(bytes);
    }

    @Override
    public void free(long devicePointer) {
        makeCurrent();
        driver.memFree(devicePointer);
    }

    @Override
    public void copyToDevice(MemorySegment host, long dst, long bytes) {
        if (bytes == 0) return;
        makeCurrent();
        if (host.isNative()) {
            // From pageable memory the driver stages the data before returning, so the caller may
            // reuse or free host as soon as this returns.
            driver.memcpyHtoDAsync(dst, host, bytes, stream);
        } else {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment staging = a.allocate(bytes, 16);
                MemorySegment.copy(host, 0, staging, 0, bytes);
                driver.memcpyHtoDAsync(dst, staging, bytes, stream);
            }
        }
    }

    @Override
    public void copyToHost(long src, MemorySegment host, long bytes) {
        if (bytes == 0) return;
        makeCurrent();
        if (host.isNative()) {
            driver.memcpyDtoHAsync(host, src, bytes, stream);
            driver.streamSynchronize(stream);
        } else {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment staging = a.allocate(bytes, 16);
                driver.memcpyDtoHAsync(staging, src, bytes, stream);
                driver.streamSynchronize(stream);
                MemorySegment.copy(staging, 0, host, 0, bytes);
            }
        }
    }

    @Override
    public void copyOnDevice(long src, long dst, long bytes) {
        if (bytes == 0) return;
        makeCurrent();
        driver.memcpyDtoDAsync(dst, src, bytes, stream);
    }

    @Override
    public void fill(long dst, byte value, long bytes) {
        if (bytes == 0) return;
        makeCurrent();
        driver.memsetD8Async(dst, value, bytes, stream);
    }

    @Override
    public GpuFunction function(String module, String entry) {
        GpuFunction f = functions.get(entry);
        if (f != null) return f;
        makeCurrent();
        Long m = modules.get(module);
        if (m == null) {
            m = driver.moduleLoadData(PtxLibrary.text(arch, module));
            modules.put(module, m);
        }
        f = new GpuFunction(module, entry, driver.moduleFunction(m, entry));
        functions.put(entry, f);
        return f;
    }

    @Override
    public void launch(GpuFunction function, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ,
                       MemorySegment params) {
        makeCurrent();
        driver.launchKernel(function.handle(), gridX, gridY, gridZ, blockX, blockY, blockZ, 0, stream, params);
    }

    @Override
    public void synchronize() {
        makeCurrent();
        driver.streamSynchronize(stream);
    }

    /** An event for timing work on this device's stream; destroy it with {@link #destroyEvent}. */
    public long createEvent() {
        makeCurrent();
        return driver.eventCreate(CudaDriver.CU_EVENT_DEFAULT);
    }

    public void recordEvent(long event) {
        makeCurrent();
        driver.eventRecord(event, stream);
    }

    /** Milliseconds between two events recorded on this device, waiting for the second. */
    public float elapsedMillis(long start, long end) {
        makeCurrent();
        driver.eventSynchronize(end);
        return driver.eventElapsedMillis(start, end);
    }

    public void destroyEvent(long event) {
        makeCurrent();
        driver.eventDestroy(event);
    }

    @Override
    public void close() {
        if (closed) return;
        makeCurrent();
        try {
            driver.streamSynchronize(stream);
            for (long m : modules.values()) driver.moduleUnload(m);
            driver.streamDestroy(stream);
        } finally {
            closed = true;
            modules.clear();
            functions.clear();
            driver.primaryContextRelease(device);
            CURRENT_CONTEXT.remove();
        }
    }
}
