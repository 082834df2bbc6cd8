package dev.kvserve.nativ.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;
import java.util.Optional;

/**
 * Hand-written downcalls into the CUDA driver API (libcuda.so.1) through java.lang.foreign.
 *
 * <p>Handles (contexts, modules, functions, streams, events) and device pointers are carried as
 * {@code long}s holding the native value. Every call that returns a non-zero CUresult throws a
 * {@link CudaException} with the driver's error name and description. The versioned symbols
 * ({@code cuMemAlloc_v2} ...) are the ones cuda.h maps the plain names to; contexts are the
 * device's primary context, which CUDA 13 keeps while it renamed cuCtxCreate.
 *
 * <p>Obtain an instance through {@link Cuda#probe()}, which loads the library lazily and turns
 * every way of failing into a reason string.
 */
public final class CudaDriver {

    public static final String DEFAULT_LIBRARY = "libcuda.so.1";

    public static final int CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1;
    public static final int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK = 8;
    public static final int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    public static final int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    public static final int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    public static final int CU_STREAM_NON_BLOCKING = 1;
    public static final int CU_EVENT_DEFAULT = 0;

    private static final int CU_JIT_ERROR_LOG_BUFFER = 5;
    private static final int CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6;
    private static final int JIT_LOG_BYTES = 16 * 1024;

    private final String library;
    private final MethodHandle cuGetErrorName, cuGetErrorString, cuInit, cuDriverGetVersion, cuDeviceGetCount,
            cuDeviceGet, cuDeviceGetName, cuDeviceGetAttribute, cuDeviceTotalMem, cuDevicePrimaryCtxRetain,
            cuDevicePrimaryCtxRelease, cuCtxSetCurrent, cuModuleLoadDataEx, cuModuleUnload, cuModuleGetFunction,
            cuMemAlloc, cuMemFree, cuMemGetInfo, cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuMemcpyDtoDAsync,
            cuMemsetD8Async, cuStreamCreate, cuStreamSynchronize, cuStreamDestroy, cuEventCreate, cuEventRecord,
            cuEventSynchronize, cuEventElapsedTime, cuEventDestroy, cuLaunchKernel;

    private CudaDriver(String library, SymbolLookup lookup) {
        this.library = library;
        Binder b = new Binder(library, lookup);
        cuGetErrorName = b.bind("cuGetErrorName", JAVA_INT, JAVA_INT, ADDRESS);
        cuGetErrorString = b.bind("cuGetErrorString", JAVA_INT, JAVA_INT, ADDRESS);
        cuInit = b.bind("cuInit", JAVA_INT, JAVA_INT);
        cuDriverGetVersion = b.bind("cuDriverGetVersion", JAVA_INT, ADDRESS);
        cuDeviceGetCount = b.bind("cuDeviceGetCount", JAVA_INT, ADDRESS);
        cuDeviceGet = b.bind("cuDeviceGet", JAVA_INT, ADDRESS, JAVA_INT);
        cuDeviceGetName = b.bind("cuDeviceGetName", JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT);
        cuDeviceGetAttribute = b.bind("cuDeviceGetAttribute", JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT);
        cuDeviceTotalMem = b.bind("cuDeviceTotalMem_v2", JAVA_INT, ADDRESS, JAVA_INT);
        cuDevicePrimaryCtxRetain = b.bind("cuDevicePrimaryCtxRetain", JAVA_INT, ADDRESS, JAVA_INT);
        cuDevicePrimaryCtxRelease = b.bind("cuDevicePrimaryCtxRelease_v2", JAVA_INT, JAVA_INT);
        cuCtxSetCurrent = b.bind("cuCtxSetCurrent", JAVA_INT, ADDRESS);
        cuModuleLoadDataEx = b.bind("cuModuleLoadDataEx", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS);
        cuModuleUnload = b.bind("cuModuleUnload", JAVA_INT, ADDRESS);
        cuModuleGetFunction = b.bind("cuModuleGetFunction", JAVA_INT, ADDRESS, ADDRESS, ADDRESS);
        cuMemAlloc = b.bind("cuMemAlloc_v2", JAVA_INT, ADDRESS, JAVA_LONG);
        cuMemFree = b.bind("cuMemFree_v2", JAVA_INT, JAVA_LONG);
        cuMemGetInfo = b.bind("cuMemGetInfo_v2", JAVA_INT, ADDRESS, ADDRESS);
        cuMemcpyHtoDAsync = b.bind("cuMemcpyHtoDAsync_v2", JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG, ADDRESS);
        cuMemcpyDtoHAsync = b.bind("cuMemcpyDtoHAsync_v2", JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG, ADDRESS);
        cuMemcpyDtoDAsync = b.bind("cuMemcpyDtoDAsync_v2", JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, ADDRESS);
        cuMemsetD8Async = b.bind("cuMemsetD8Async", JAVA_INT, JAVA_LONG, JAVA_BYTE, JAVA_LONG, ADDRESS);
        cuStreamCreate = b.bind("cuStreamCreate", JAVA_INT, ADDRESS, JAVA_INT);
        cuStreamSynchronize = b.bind("cuStreamSynchronize", JAVA_INT, ADDRESS);
        cuStreamDestroy = b.bind("cuStreamDestroy_v2", JAVA_INT, ADDRESS);
        cuEventCreate = b.bind("cuEventCreate", JAVA_INT, ADDRESS, JAVA_INT);
        cuEventRecord = b.bind("cuEventRecord", JAVA_INT, ADDRESS, ADDRESS);
        cuEventSynchronize = b.bind("cuEventSynchronize", JAVA_INT, ADDRESS);
        // CUDA 12.8 added the _v2 entry point and CUDA 13 maps the plain name to it; older drivers
        // have only the original.
        cuEventElapsedTime = b.bindFirst(new String[] {"cuEventElapsedTime_v2", "cuEventElapsedTime"},
                JAVA_INT, ADDRESS, ADDRESS, ADDRESS);
        cuEventDestroy = b.bind("cuEventDestroy_v2", JAVA_INT, ADDRESS);
        cuLaunchKernel = b.bind("cuLaunchKernel", JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT,
                JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, ADDRESS);
    }

    /**
     * Loads {@code library} (a name for the dynamic loader or a path) and binds every entry point.
     * Nothing is initialised yet: call {@link #init} next.
     *
     * @throws CudaException when the library cannot be loaded or lacks an entry point
     */
    public static CudaDriver load(String library) {
        SymbolLookup lookup;
        try {
            // Arena.global(): the driver stays loaded for the life of the JVM, like any other use.
            lookup = SymbolLookup.libraryLookup(library, Arena.global());
        } catch (IllegalArgumentException | UnsatisfiedLinkError | IllegalCallerException e) {
            throw new CudaException("cannot load " + library + ": " + e.getMessage());
        }
        return new CudaDriver(library, lookup);
    }

    public String library() {
        return library;
    }

    // ---------------------------------------------------------------- initialisation and devices

    public void init() {
        check("cuInit", call(() -> (int) cuInit.invokeExact(0)));
    }

    /** Driver version as 1000 * major + 10 * minor (13000 for CUDA 13.0). */
    public int driverVersion() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check("cuDriverGetVersion", call(() -> (int) cuDriverGetVersion.invokeExact(v)));
            return v.get(JAVA_INT, 0);
        }
    }

    public int deviceCount() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment n = a.allocate(JAVA_INT);
            check("cuDeviceGetCount", call(() -> (int) cuDeviceGetCount.invokeExact(n)));
            return n.get(JAVA_INT, 0);
        }
    }

    /** The CUdevice of ordinal {@code ordinal}. */
    public int device(int ordinal) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment d = a.allocate(JAVA_INT);
            check("cuDeviceGet", call(() -> (int) cuDeviceGet.invokeExact(d, ordinal)));
            return d.get(JAVA_INT, 0);
        }
    }

    public String deviceName(int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment name = a.allocate(256);
            check("cuDeviceGetName", call(() -> (int) cuDeviceGetName.invokeExact(name, 256, device)));
            return name.getString(0, StandardCharsets.UTF_8);
        }
    }

    public int deviceAttribute(int attribute, int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check("cuDeviceGetAttribute", call(() -> (int) cuDeviceGetAttribute.invokeExact(v, attribute, device)));
            return v.get(JAVA_INT, 0);
        }
    }

    public long deviceTotalMemory(int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_LONG);
            check("cuDeviceTotalMem_v2", call(() -> (int) cuDeviceTotalMem.invokeExact(v, device)));
            return v.get(JAVA_LONG, 0);
        }
    }

    /** Retains (creating on first use) the device's primary context and returns its handle. */
    public long primaryContextRetain(int device) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ctx = a.allocate(ADDRESS);
            check("cuDevicePrimaryCtxRetain", call(() -> (int) cuDevicePrimaryCtxRetain.invokeExact(ctx, device)));
            return ctx.get(ADDRESS, 0).address();
        }
    }

    public void primaryContextRelease(int device) {
        check("cuDevicePrimaryCtxRelease_v2", call(() -> (int) cuDevicePrimaryCtxRelease.invokeExact(device)));
    }

    /** Binds {@code context} to the calling thread (a per-thread setting of the driver). */
    public void setCurrentContext(long context) {
        MemorySegment c = MemorySegment.ofAddress(context);
        check("cuCtxSetCurrent", call(() -> (int) cuCtxSetCurrent.invokeExact(c)));
    }

    /** {free, total} bytes of device memory of the current context's device. */
    public long[] memoryInfo() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment free = a.allocate(JAVA_LONG), total = a.allocate(JAVA_LONG);
            check("cuMemGetInfo_v2", call(() -> (int) cuMemGetInfo.invokeExact(free, total)));
            return new long[] {free.get(JAVA_LONG, 0), total.get(JAVA_LONG, 0)};
        }
    }

    // ---------------------------------------------------------------- modules

    /**
     * Loads a module from PTX text (JIT-compiled by the driver for the current device). On failure
     * the JIT's error log is part of the exception message.
     */
    public long moduleLoadData(String ptx) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment image = a.allocateFrom(ptx, StandardCharsets.UTF_8);
            MemorySegment module = a.allocate(ADDRESS);
            MemorySegment log = a.allocate(JIT_LOG_BYTES);
            MemorySegment options = a.allocate(JAVA_INT, 2);
            options.setAtIndex(JAVA_INT, 0, CU_JIT_ERROR_LOG_BUFFER);
            options.setAtIndex(JAVA_INT, 1, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES);
            // Option values are passed as pointer-sized words: the buffer, then its size as a number.
            MemorySegment values = a.allocate(ADDRESS, 2);
            values.setAtIndex(ADDRESS, 0, log);
            values.setAtIndex(ADDRESS, 1, MemorySegment.ofAddress(JIT_LOG_BYTES));
            int result = call(() -> (int) cuModuleLoadDataEx.invokeExact(module, image, 2, options, values));
            if (result != 0) {
                String jitLog = log.getString(0, StandardCharsets.UTF_8).strip();
                throw new CudaException("cuModuleLoadDataEx", result, errorName(result),
                        errorString(result) + (jitLog.isEmpty() ? "" : "; JIT log: " + jitLog));
            }
            return module.get(ADDRESS, 0).address();
        }
    }

    public void moduleUnload(long module) {
        MemorySegment m = MemorySegment.ofAddress(module);
        check("cuModuleUnload", call(() -> (int) cuModuleUnload.invokeExact(m)));
    }

    public long moduleFunction(long module, String name) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment f = a.allocate(ADDRESS);
            MemorySegment m = MemorySegment.ofAddress(module);
            MemorySegment n = a.allocateFrom(name, StandardCharsets.UTF_8);
            int result = call(() -> (int) cuModuleGetFunction.invokeExact(f, m, n));
            if (result != 0) {
                throw new CudaException("cuModuleGetFunction(" + name + ")", result, errorName(result), errorString(result));
            }
            return f.get(ADDRESS, 0).address();
        }
    }

    // ---------------------------------------------------------------- memory

    public long memAlloc(long bytes) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(JAVA_LONG);
            int result = call(() -> (int) cuMemAlloc.invokeExact(p, bytes));
            if (result != 0) {
                throw new CudaException("cuMemAlloc_v2(" + bytes + " bytes)", result, errorName(result), errorString(result));
            }
            return p.get(JAVA_LONG, 0);
        }
    }

    public void memFree(long devicePointer) {
        check("cuMemFree_v2", call(() -> (int) cuMemFree.invokeExact(devicePointer)));
    }

    /** Host to device on {@code stream}. {@code src} must be native memory of at least {@code bytes}. */
    public void memcpyHtoDAsync(long dst, MemorySegment src, long bytes, long stream) {
        MemorySegment s = MemorySegment.ofAddress(stream);
        check("cuMemcpyHtoDAsync_v2", call(() -> (int) cuMemcpyHtoDAsync.invokeExact(dst, src, bytes, s)));
    }

    /** Device to host on {@code stream}. {@code dst} must be native memory of at least {@code bytes}. */
    public void memcpyDtoHAsync(MemorySegment dst, long src, long bytes, long stream) {
        MemorySegment s = MemorySegment.ofAddress(stream);
        check("cuMemcpyDtoHAsync_v2", call(() -> (int) cuMemcpyDtoHAsync.invokeExact(dst, src, bytes, s)));
    }

    public void memcpyDtoDAsync(long dst, long src, long bytes, long stream) {
        MemorySegment s = MemorySegment.ofAddress(stream);
        check("cuMemcpyDtoDAsync_v2", call(() -> (int) cuMemcpyDtoDAsync.invokeExact(dst, src, bytes, s)));
    }

    public void memsetD8Async(long dst, byte value, long bytes, long stream) {
        MemorySegment s = MemorySegment.ofAddress(stream);
        check("cuMemsetD8Async", call(() -> (int) cuMemsetD8Async.invokeExact(dst, value, bytes, s)));
    }

    // ---------------------------------------------------------------- streams and events

    public long streamCreate(int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(ADDRESS);
            check("cuStreamCreate", call(() -> (int) cuStreamCreate.invokeExact(s, flags)));
            return s.get(ADDRESS, 0).address();
        }
    }

    public void streamSynchronize(long stream) {
        MemorySegment s = MemorySegment.ofAddress(stream);
        check("cuStreamSynchronize", call(() -> (int) cuStreamSynchronize.invokeExact(s)));
    }

    public void streamDestroy(long stream) {
        MemorySegment s = MemorySegment.ofAddress(stream);
        check("cuStreamDestroy_v2", call(() -> (int) cuStreamDestroy.invokeExact(s)));
    }

    public long eventCreate(int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment e = a.allocate(ADDRESS);
            check("cuEventCreate", call(() -> (int) cuEventCreate.invokeExact(e, flags)));
            return e.get(ADDRESS, 0).address();
        }
    }

    public void eventRecord(long event, long stream) {
        MemorySegment e = MemorySegment.ofAddress(event), s = MemorySegment.ofAddress(stream);
        check("cuEventRecord", call(() -> (int) cuEventRecord.invokeExact(e, s)));
    }

    public void eventSynchronize(long event) {
        MemorySegment e = MemorySegment.ofAddress(event);
        check("cuEventSynchronize", call(() -> (int) cuEventSynchronize.invokeExact(e)));
    }

    /** Milliseconds between two recorded events (resolution about half a microsecond). */
    public float eventElapsedMillis(long start, long end) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ms = a.allocate(JAVA_FLOAT);
            MemorySegment s = MemorySegment.ofAddress(start), e = MemorySegment.ofAddress(end);
            check("cuEventElapsedTime", call(() -> (int) cuEventElapsedTime.invokeExact(ms, s, e)));
            return ms.get(JAVA_FLOAT, 0);
        }
    }

    public void eventDestroy(long event) {
        MemorySegment e = MemorySegment.ofAddress(event);
        check("cuEventDestroy_v2", call(() -> (int) cuEventDestroy.invokeExact(e)));
    }

    // ---------------------------------------------------------------- launches

    /**
     * Enqueues {@code function} on {@code stream}. {@code params} is the kernelParams array: one
     * pointer per kernel parameter, each to that parameter's value (see {@link KernelArgs#pack}).
     * The driver copies the values before returning, so params may be freed right after.
     */
    public void launchKernel(long function, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ,
                             int sharedBytes, long stream, MemorySegment params) {
        MemorySegment f = MemorySegment.ofAddress(function), s = MemorySegment.ofAddress(stream);
        int result = call(() -> (int) cuLaunchKernel.invokeExact(f, gridX, gridY, gridZ, blockX, blockY, blockZ,
                sharedBytes, s, params, MemorySegment.NULL));
        check("cuLaunchKernel", result);
    }

    // ---------------------------------------------------------------- errors

    /** The enum name of a CUresult, e.g. CUDA_ERROR_INVALID_VALUE. */
    public String errorName(int result) {
        return errorText(cuGetErrorName, result).orElse("CUresult " + result);
    }

    /** The driver's description of a CUresult. */
    public String errorString(int result) {
        return errorText(cuGetErrorString, result).orElse("unknown error");
    }

    private Optional<String> errorText(MethodHandle h, int result) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            int r = call(() -> (int) h.invokeExact(result, p));
            MemorySegment s = p.get(ADDRESS, 0);
            if (r != 0 || s.address() == 0) return Optional.empty();
            // The driver returns pointers to its own static strings.
            return Optional.of(s.reinterpret(4096).getString(0, StandardCharsets.UTF_8));
        }
    }

    private void check(String call, int result) {
        if (result != 0) throw new CudaException(call, result, errorName(result), errorString(result));
    }

    @FunctionalInterface
    private interface Call {
        int run() throws Throwable;
    }

    private static int call(Call c) {
        try {
            return c.run();
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    /** Resolves symbols, turning a missing one into a CudaException that names it. */
    private record Binder(String library, SymbolLookup lookup) {

        MethodHandle bind(String name, java.lang.foreign.MemoryLayout result, java.lang.foreign.MemoryLayout... args) {
            MemorySegment symbol = lookup.find(name).orElseThrow(() -> new CudaException(
                    library + " has no " + name + " (not a CUDA driver, or one older than CUDA 12)"));
            return Linker.nativeLinker().downcallHandle(symbol, FunctionDescriptor.of(result, args));
        }

        MethodHandle bindFirst(String[] names, java.lang.foreign.MemoryLayout result,
                               java.lang.foreign.MemoryLayout... args) {
            for (String name : names) {
                Optional<MemorySegment> symbol = lookup.find(name);
                if (symbol.isPresent()) {
                    return Linker.nativeLinker().downcallHandle(symbol.get(), FunctionDescriptor.of(result, args));
                }
            }
            throw new CudaException(library + " has none of " + String.join(", ", names));
        }
    }
}
