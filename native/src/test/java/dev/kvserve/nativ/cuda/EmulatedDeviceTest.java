package dev.kvserve.nativ.cuda;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/**
 * The emulator end to end on one kernel: parameters packed by KernelArgs reach the kernel in the
 * order and width it declares.
 */
class EmulatedDeviceTest {

    private static EmulatedDevice open() {
        StringBuilder reason = new StringBuilder();
        Optional<EmulatedDevice> d = EmulatedDevice.tryOpen(EmulatedDevice.defaultLibrary(), reason);
        assumeTrue(d.isPresent(), reason.toString());
        return d.get();
    }

    @Test
    void addKernelSeesPackedParameters() {
        try (EmulatedDevice dev = open(); Arena arena = Arena.ofConfined()) {
            int n = 1000;
            MemorySegment a = arena.allocate(JAVA_FLOAT, n), b = arena.allocate(JAVA_FLOAT, n);
            for (int i = 0; i < n; i++) {
                a.setAtIndex(JAVA_FLOAT, i, i);
                b.setAtIndex(JAVA_FLOAT, i, 0.5f * i);
            }
            long da = dev.allocate(4L * n), db = dev.allocate(4L * n);
            dev.copyToDevice(a, da, 4L * n);
            dev.copyToDevice(b, db, 4L * n);
            KernelArgs args = new KernelArgs().ptr(da).ptr(db).i64(n - 1);   // leave the last element alone
            dev.launch(dev.function("ops", "add_f32"), 2, 1, 1, 256, 1, 1, args.pack(arena));
            MemorySegment out = arena.allocate(JAVA_FLOAT, n);
            dev.copyToHost(da, out, 4L * n);
            for (int i = 0; i < n - 1; i++) assertThat(out.getAtIndex(JAVA_FLOAT, i)).isEqualTo(1.5f * i);
            assertThat(out.getAtIndex(JAVA_FLOAT, n - 1)).isEqualTo(n - 1f);
        }
    }

    @Test
    void unknownKernelAndBadLaunchAreReported() {
        try (EmulatedDevice dev = open(); Arena arena = Arena.ofConfined()) {
            assertThatThrownBy(() -> dev.function("ops", "no_such_kernel")).hasMessageContaining("no_such_kernel");
            GpuDevice.GpuFunction f = dev.function("ops", "add_f32");
            MemorySegment params = new KernelArgs().ptr(0).ptr(0).i64(0).pack(arena);
            assertThatThrownBy(() -> dev.launch(f, 1, 1, 1, 2048, 1, 1, params))
                    .isInstanceOf(CudaException.class).hasMessageContaining("invalid launch configuration");
        }
    }
}
