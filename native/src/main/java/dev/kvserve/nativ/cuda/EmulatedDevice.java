package dev.kvserve.nativ.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;

/**
 * Runs KVServe's kernels on the CPU through libkvserve_cuemu.so, the same .cu sources compiled with
 * g++ against a small emulation of the CUDA thread model (native/build-emu.sh). "Device" memory is
 * host memory. This exists so that the kernel tests exercise the real kernel code, the launch
 * geometry and the parameter packing on machines without a GPU; it is slow and test-only.
 *
 * <p>Kernels run unchecked: an out-of-bounds access in a kernel is an out-of-bounds access in this
 * process.
 */
public final class EmulatedDevice implements GpuDevice {

    private final Path library;
    private final MethodHandle emuFind, emuLaunch, emuLastError;
    private final Map<Long, Arena> allocations = new HashMap<>();
    private final Map<String, GpuFunction> functions = new HashMap<>();

    private EmulatedDevice(Path library) {
        this.library = library;
        SymbolLookup lookup = SymbolLookup.libraryLookup(library, Arena.global());
        Linker linker = Linker.nativeLinker();
        emuFind = linker.downcallHandle(lookup.findOrThrow("emu_find"), FunctionDescriptor.of(JAVA_INT, ADDRESS));
        emuLaunch = linker.downcallHandle(lookup.findOrThrow("emu_launch"), FunctionDescriptor.of(JAVA_INT,
                JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS));
        emuLastError = linker.downcallHandle(lookup.findOrThrow("emu_last_error"), FunctionDescriptor.of(ADDRESS));
    }

    /**
     * Where the emulator library is: the system property {@code kvserve.cuemu.library}, else
     * native/target/cuemu/libkvserve_cuemu.so under {@code kvserve.root} (set by surefire) or under
     * the working directory's parent.
     */
    public static Path defaultLibrary() {
        String explicit = System.getProperty("kvserve.cuemu.library");
        if (explicit != null) return Path.of(explicit);
        String root = System.getProperty("kvserve.root", "..");
        return Path.of(root, "native", "target", "cuemu", "libkvserve_cuemu.so").toAbsolutePath().normalize();
    }

    /** Opens the emulator, or says why it cannot (not built: no C++ compiler at build time). */
    public static Optional<EmulatedDevice> tryOpen(Path library, StringBuilder reason) {
        if (!Files.isRegularFile(library)) {
            reason.append("CUDA kernel emulator not built (").append(library)
                    .append(" missing: native/build-emu.sh needs g++)");
            return Optional.empty();
        }
        try {
            return Optional.of(new EmulatedDevice(library));
        } catch (RuntimeException | LinkageError e) {
            reason.append("cannot load ").append(library).append(": ").append(e);
            return Optional.empty();
        }
    }

    @Override
    public String description() {
        return "CPU emulation of the CUDA kernels (" + library.getFileName() + ")";
    }

    @Override
    public long allocate(long bytes) {
        if (bytes <= 0) throw new IllegalArgumentException("device allocation of " + bytes + " bytes");
        Arena arena = Arena.ofShared();
        MemorySegment s = arena.allocate(bytes, 256);
        allocations.put(s.address(), arena);
        return s.address();
    }

    @Override
    public void free(long devicePointer) {
        Arena arena = allocations.remove(devicePointer);
        if (arena == null) throw new IllegalArgumentException("not an allocation of this device: " + devicePointer);
        arena.close();
    }

    private static MemorySegment at(long address, long bytes) {
        return MemorySegment.ofAddress(address).reinterpret(bytes);
    }

    @Override
    public void copyToDevice(MemorySegment host, long dst, long bytes) {
        if (bytes > 0) MemorySegment.copy(host, 0, at(dst, bytes), 0, bytes);
    }

    @Override
    public void copyToHost(long src, MemorySegment host, long bytes) {
        if (bytes > 0) MemorySegment.copy(at(src, bytes), 0, host, 0, bytes);
    }

    @Override
    public void copyOnDevice(long src, long dst, long bytes) {
        if (bytes > 0) MemorySegment.copy(at(src, bytes), 0, at(dst, bytes), 0, bytes);
    }

    @Override
    public void fill(long dst, byte value, long bytes) {
        if (bytes > 0) at(dst, bytes).fill(value);
    }

    @Override
    public GpuFunction function(String module, String entry) {
        return functions.computeIfAbsent(entry, e -> {
            try (Arena a = Arena.ofConfined()) {
                int index = (int) emuFind.invokeExact(a.allocateFrom(e, StandardCharsets.UTF_8));
                if (index < 0) throw new IllegalStateException("the kernel emulator has no kernel " + e);
                return new GpuFunction(module, e, index);
            } catch (RuntimeException | Error ex) {
                throw ex;
            } catch (Throwable t) {
                throw new IllegalStateException(t);
            }
        });
    }

    @Override
    public void launch(GpuFunction function, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ,
                       MemorySegment params) {
        int rc;
        try {
            rc = (int) emuLaunch.invokeExact((int) function.handle(), gridX, gridY, gridZ, blockX, blockY, blockZ, 0,
                    params);
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
        if (rc != 0) throw new CudaException("emulated launch of " + function.entry() + " failed: " + lastError());
    }

    private String lastError() {
        try {
            MemorySegment s = (MemorySegment) emuLastError.invokeExact();
            return s.reinterpret(4096).getString(0, StandardCharsets.UTF_8);
        } catch (Throwable t) {
            return "(no message)";
        }
    }

    @Override
    public void synchronize() {}

    @Override
    public void close() {
        allocations.values().forEach(Arena::close);
        allocations.clear();
    }
}
