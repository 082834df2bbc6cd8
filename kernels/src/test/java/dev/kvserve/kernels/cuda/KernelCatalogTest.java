package dev.kvserve.kernels.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kvserve.nativ.cuda.PtxLibrary;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * Runs everywhere, GPU or not: every kernel the backend can launch is an entry of the committed
 * PTX, for both architectures, with parameters of the kinds Java packs; and no PTX entry is left
 * without a launcher.
 */
class KernelCatalogTest {

    @Test
    void everyLaunchedKernelIsInThePtxWithMatchingParameters() {
        for (String arch : PtxLibrary.ARCHES) {
            for (KernelSpec k : Kernels.all()) {
                Map<String, List<String>> entries = PtxLibrary.entries(PtxLibrary.text(arch, k.module()));
                assertThat(entries).as(arch + " " + k).containsKey(k.entry());
                List<String> declared = entries.get(k.entry());
                assertThat(declared).as(arch + " " + k + " parameter count").hasSize(k.signature().size());
                for (int i = 0; i < declared.size(); i++) {
                    assertThat(PtxLibrary.accepts(declared.get(i), k.signature().get(i)))
                            .as("%s %s parameter %d: PTX .%s, Java %s", arch, k, i, declared.get(i), k.signature().get(i))
                            .isTrue();
                }
            }
        }
    }

    @Test
    void everyPtxEntryHasALauncher() {
        Set<String> launched = new HashSet<>();
        for (KernelSpec k : Kernels.all()) launched.add(k.entry());
        for (String module : PtxLibrary.MODULES) {
            assertThat(launched).as("kernels of " + module + " that Java never launches")
                    .containsAll(PtxLibrary.entries(PtxLibrary.text("sm_80", module)).keySet());
        }
    }

    @Test
    void blockSizesAreWholeWarps() {
        for (KernelSpec k : Kernels.all()) {
            assertThat(k.threads() % 32).as(k.toString()).isZero();
            assertThat(k.threads()).as(k.toString()).isBetween(32, 1024);
        }
    }
}
