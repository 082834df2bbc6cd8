package dev.kvserve.kernels;

import dev.kvserve.kernels.cpu.CpuBackend;
import dev.kvserve.kernels.cuda.CudaBackend;
import dev.kvserve.nativ.cuda.Cuda;
import dev.kvserve.nativ.cuda.CudaDevice;
import java.util.Locale;

/**
 * Picks the backend for a preference string: {@code "cuda"} (a GPU or an exception saying why
 * not), {@code "cpu"}, or {@code "auto"} (a GPU when the driver and a device of compute capability
 * 8.0+ are there, else the CPU, saying why in one log line).
 */
public final class Backends {

    private static final System.Logger LOG = System.getLogger(Backends.class.getName());

    private Backends() {}

    /** {@link #select(String, int)} with one CPU thread per available processor. */
    public static Backend select(String preference) {
        return select(preference, Runtime.getRuntime().availableProcessors());
    }

    /**
     * @param preference "auto", "cpu" or "cuda" (case-insensitive)
     * @param cpuThreads threads of the CPU backend if it is the one chosen
     * @throws IllegalArgumentException for any other preference
     * @throws IllegalStateException    for "cuda" when no usable GPU is present, with the reason
     */
    public static Backend select(String preference, int cpuThreads) {
        String p = preference == null ? "" : preference.strip().toLowerCase(Locale.ROOT);
        return switch (p) {
            case "cpu" -> new CpuBackend(cpuThreads);
            case "cuda" -> {
                Cuda.Probe probe = Cuda.probe();
                if (!probe.available()) {
                    throw new IllegalStateException("CUDA backend requested but unavailable: " + probe.description());
                }
                yield new CudaBackend(CudaDevice.open(probe));
            }
            case "auto" -> {
                Cuda.Probe probe = Cuda.probe();
                if (probe.available()) {
                    try {
                        CudaBackend cuda = new CudaBackend(CudaDevice.open(probe));
                        LOG.log(System.Logger.Level.INFO, "backend: CUDA on " + probe.description());
                        yield cuda;
                    } catch (RuntimeException e) {
                        LOG.log(System.Logger.Level.INFO, "backend: CPU with " + cpuThreads
                                + " threads; opening CUDA on " + probe.description() + " failed: " + e.getMessage());
                        yield new CpuBackend(cpuThreads);
                    }
                }
                LOG.log(System.Logger.Level.INFO, "backend: CPU with " + cpuThreads + " threads; CUDA unavailable: "
                        + probe.description());
                yield new CpuBackend(cpuThreads);
            }
            default -> throw new IllegalArgumentException("unknown backend '" + preference + "': expected auto, cpu or cuda");
        };
    }
}
