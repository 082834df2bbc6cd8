package dev.kvserve.kernels;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kernels.cpu.CpuBackend;
import dev.kvserve.kernels.cuda.CudaBackend;
import dev.kvserve.nativ.cuda.Cuda;
import org.junit.jupiter.api.Test;

class BackendsTest {

    @Test
    void cpuIsAlwaysThere() {
        try (Backend b = Backends.select("CPU", 2)) {
            assertThat(b).isInstanceOf(CpuBackend.class);
            assertThat(((CpuBackend) b).threads()).isEqualTo(2);
        }
    }

    @Test
    void autoStaysOnTheCpuWhileAttentionIsHostOnly() {
        // Also on a GPU machine (checked on an H100): the paged attention reads host memory, so a
        // whole model cannot run on CUDA yet and auto must not pick it.
        try (Backend b = Backends.select(" auto ", 1)) {
            assertThat(b).isInstanceOf(CpuBackend.class);
        }
    }

    @Test
    void explicitCudaWithoutAGpuSaysWhy() {
        if (Cuda.isAvailable()) {
            try (Backend b = Backends.select("cuda")) {
                assertThat(b).isInstanceOf(CudaBackend.class);
            }
        } else {
            assertThatThrownBy(() -> Backends.select("cuda")).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining(Cuda.probe().description());
        }
    }

    @Test
    void unknownPreferenceIsRefusedByName() {
        assertThatThrownBy(() -> Backends.select("tpu")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("'tpu'").hasMessageContaining("auto, cpu or cuda");
    }
}
