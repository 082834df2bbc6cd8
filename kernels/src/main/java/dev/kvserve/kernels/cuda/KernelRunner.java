package dev.kvserve.kernels.cuda;

import dev.kvserve.nativ.cuda.GpuDevice;
import dev.kvserve.nativ.cuda.KernelArgs;
import dev.kvserve.nativ.cuda.PtxLibrary;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Resolves kernels on first use (checking that the PTX declares the parameters Java will pass) and
 * launches them with arguments packed into one reused native buffer: the driver copies parameter
 * values during the launch call, so the buffer is free again when launch returns.
 */
final class KernelRunner {

    private static final int MAX_GRID_YZ = 65_535;

    private final GpuDevice device;
    private final MemorySegment paramBuffer;
    private final Map<KernelSpec, GpuDevice.GpuFunction> resolved = new HashMap<>();
    private final Map<String, Map<String, List<String>>> ptxEntries = new HashMap<>();

    KernelRunner(GpuDevice device, Arena arena) {
        this.device = device;
        this.paramBuffer = arena.allocate(4096, 16);
    }

    void launch(KernelSpec kernel, int gridX, int gridY, int gridZ, KernelArgs args) {
        args.requireSignature(kernel.entry(), kernel.signature());
        if (gridX <= 0 || gridY <= 0 || gridZ <= 0 || gridY > MAX_GRID_YZ || gridZ > MAX_GRID_YZ) {
            throw new IllegalArgumentException("grid " + gridX + "x" + gridY + "x" + gridZ + " for " + kernel
                    + " is outside the device limits");
        }
        GpuDevice.GpuFunction f = resolved.get(kernel);
        if (f == null) {
            f = resolve(kernel);
            resolved.put(kernel, f);
        }
        device.launch(f, gridX, gridY, gridZ, kernel.threads(), 1, 1,
                args.pack(SegmentAllocator.slicingAllocator(paramBuffer)));
    }

    private GpuDevice.GpuFunction resolve(KernelSpec kernel) {
        // Both architectures export identical entries (PtxResourcesTest), so sm_80's text serves
        // to check the declaration whichever build the device loads.
        Map<String, List<String>> entries = ptxEntries.computeIfAbsent(kernel.module(),
                m -> PtxLibrary.entries(PtxLibrary.text("sm_80", m)));
        List<String> declared = entries.get(kernel.entry());
        if (declared == null) {
            throw new IllegalStateException("PTX module " + kernel.module() + " has no kernel " + kernel.entry());
        }
        boolean ok = declared.size() == kernel.signature().size();
        for (int i = 0; ok && i < declared.size(); i++) ok = PtxLibrary.accepts(declared.get(i), kernel.signature().get(i));
        if (!ok) {
            throw new IllegalStateException("kernel " + kernel + " declares " + declared + " but Java passes "
                    + kernel.signature());
        }
        return device.function(kernel.module(), kernel.entry());
    }
}
