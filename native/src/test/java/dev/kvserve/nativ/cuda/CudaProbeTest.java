package dev.kvserve.nativ.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class CudaProbeTest {

    @Test
    void missingLibraryIsAReasonNotAnError() {
        Cuda.Probe p = Cuda.probe("libcuda-kvserve-does-not-exist.so.1", 0);
        assertThat(p.available()).isFalse();
        assertThat(p.driver()).isNull();
        assertThat(p.unavailableReason()).hasValueSatisfying(r ->
                assertThat(r).contains("libcuda-kvserve-does-not-exist.so.1"));
        assertThat(p.driverIfAvailable()).isEmpty();
    }

    @Test
    void libraryWithoutTheDriverEntryPointsIsAReason() {
        // libm loads fine everywhere on Linux but has no cuInit: the binder must say which symbol.
        Cuda.Probe p = Cuda.probe("libm.so.6", 0);
        assertThat(p.available()).isFalse();
        assertThat(p.description()).contains("libm.so.6").contains("has no cu");
    }

    @Test
    void loadFailureIsACatchableCudaException() {
        assertThatThrownBy(() -> CudaDriver.load("/nonexistent/libcuda.so.1"))
                .isInstanceOf(CudaException.class)
                .hasMessageContaining("/nonexistent/libcuda.so.1");
    }

    @Test
    void defaultProbeNeverThrowsAndExplainsItself() {
        Cuda.Probe p = Cuda.probe();
        assertThat(p.description()).isNotBlank();
        assertThat(Cuda.isAvailable()).isEqualTo(p.available());
        assertThat(Cuda.tryOpen().isPresent()).isEqualTo(p.available());
        if (p.available()) {
            assertThat(p.computeCapability()).isGreaterThanOrEqualTo(Cuda.MIN_COMPUTE_CAPABILITY);
            assertThat(p.device()).isGreaterThanOrEqualTo(0);
        } else {
            assertThat(p.unavailableReason()).isPresent();
            assertThatThrownBy(() -> CudaDevice.open(p)).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining(p.description());
        }
    }

    @Test
    void deviceOrdinalOutOfRangeIsAReason() {
        Cuda.Probe p = Cuda.probe(CudaDriver.DEFAULT_LIBRARY, 1_000);
        assertThat(p.available()).isFalse();
        assertThat(p.description()).isNotBlank();
    }
}
