package dev.kvserve.kernels.cuda;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.kvserve.nativ.cuda.Cuda;
import dev.kvserve.nativ.cuda.CudaDevice;
import dev.kvserve.nativ.cuda.EmulatedDevice;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * The devices kernel tests run on: "cuda", the first GPU (skipped with the probe's reason where
 * there is none), and "emulator", the same kernels compiled for the CPU by native/build-emu.sh
 * (skipped where it was not built). {@code -Dkvserve.test.devices=cuda} limits the set.
 */
final class TestDevices {

    static final String CUDA = "cuda";
    static final String EMULATOR = "emulator";

    private static final Map<String, CudaBackend> OPEN = new LinkedHashMap<>();

    private TestDevices() {}

    static Stream<String> names() {
        String only = System.getProperty("kvserve.test.devices");
        return only == null ? Stream.of(CUDA, EMULATOR) : Arrays.stream(only.split(",")).map(String::strip);
    }

    /** The backend for {@code name}; aborts the test (skip, with the reason) when it cannot exist here. */
    static synchronized CudaBackend backend(String name) {
        CudaBackend b = OPEN.get(name);
        if (b != null) return b;
        switch (name) {
            case CUDA -> {
                Cuda.Probe p = Cuda.probe();
                assumeTrue(p.available(), () -> "no CUDA GPU here: " + p.description());
                b = new CudaBackend(CudaDevice.open(p));
            }
            case EMULATOR -> {
                StringBuilder reason = new StringBuilder();
                Optional<EmulatedDevice> d = EmulatedDevice.tryOpen(EmulatedDevice.defaultLibrary(), reason);
                assumeTrue(d.isPresent(), reason::toString);
                b = new CudaBackend(d.get());
            }
            default -> throw new IllegalArgumentException("unknown test device " + name);
        }
        OPEN.put(name, b);
        return b;
    }

    static synchronized void closeAll() {
        OPEN.values().forEach(CudaBackend::close);
        OPEN.clear();
    }
}
