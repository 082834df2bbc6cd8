package dev.kvserve.kernels;

import dev.kvserve.kernels.cpu.CpuBackend;
import dev.kvserve.kernels.cuda.CudaBackend;
import dev.kvserve.nativ.cpu.CpuKernels;
import dev.kvserve.nativ.cuda.Cuda;
import dev.kvserve.nativ.cuda.CudaDevice;
import java.util.Locale;

/**
 * Picks the backend for a preference string: {@code "cuda"} (a GPU or an exception saying why
 * not), {@code "cpu"}, or {@code "auto"} (the CPU, saying in one log line why not CUDA).
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
                // The decoder's attention over the paged KV cache runs on host memory only, so a
                // whole model cannot run on the CUDA backend yet; auto therefore stays on the CPU.
                Cuda.Probe probe = Cuda.probe();
                CpuKernels.Probe int8 = CpuKernels.probe();
                LOG.log(System.Logger.Level.INFO, "backend: CPU with " + cpuThreads + " threads, "
                        + (int8.available() ? "int8 Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q6_K kernels on " + int8.description()
                                : "Vector API kernels only (int8 kernels: " + int8.description() + ")")
                        + (probe.available() ? " (CUDA " + probe.description() + " is present, but paged attention is CPU-only)"
                                : "; CUDA unavailable: " + probe.description()));
                yield new CpuBackend(cpuThreads);
            }
            default -> throw new IllegalArgumentException("unknown backend '" + preference + "': expected auto, cpu or cuda");
        };
    }
}
