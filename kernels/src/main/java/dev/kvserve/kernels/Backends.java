package dev.kvserve.kernels;

import dev.kvserve.kernels.cpu.CpuBackend;
import java.util.Locale;

/** Chooses the compute backend: CUDA where a GPU is usable, else the CPU. */
public final class Backends {
    private Backends() {}

    /** @param preference "auto", "cpu" or "cuda"; @param threads CPU threads (also the host-side pool size) */
    public static Backend select(String preference, int threads) {
        String p = preference == null ? "auto" : preference.toLowerCase(Locale.ROOT);
        return switch (p) {
            case "cpu", "auto" -> new CpuBackend(threads);
            default -> throw new IllegalArgumentException("unknown backend '" + preference + "'; use auto, cpu or cuda");
        };
    }
}
