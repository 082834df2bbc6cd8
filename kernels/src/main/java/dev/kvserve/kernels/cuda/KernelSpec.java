package dev.kvserve.kernels.cuda;

import dev.kvserve.nativ.cuda.ParamKind;
import java.util.List;

/**
 * A kernel the backend launches: PTX module, entry name, the parameter kinds Java passes (checked
 * against the PTX declaration when the kernel is first resolved) and its block size.
 */
public record KernelSpec(String module, String entry, int threads, List<ParamKind> signature) {

    public KernelSpec {
        signature = List.copyOf(signature);
    }

    @Override
    public String toString() {
        return module + "/" + entry;
    }
}
