package dev.kvserve.nativ.cuda;

import java.util.Optional;

/**
 * Whether this machine can run the CUDA backend, decided once, lazily, without ever letting a
 * linkage error escape: every way of failing (no libcuda.so.1, a driver too old for an entry point,
 * cuInit failing, no device, a device older than compute capability 8.0, native access denied)
 * becomes a {@link Probe} with a one-line reason, so callers can fall back to the CPU with one log
 * line.
 *
 * <p>System properties: {@code kvserve.cuda.library} names another driver library (a path or a
 * loader name); {@code kvserve.cuda.device} picks the device ordinal (default 0).
 */
public final class Cuda {

    /** Lowest compute capability the PTX targets (sm_80, Ampere). */
    public static final int MIN_COMPUTE_CAPABILITY = 80;

    private Cuda() {}

    /**
     * Outcome of probing the driver.
     *
     * @param driver            the loaded and initialised driver, or null when unavailable
     * @param device            ordinal of the device that will be used (-1 when unavailable)
     * @param computeCapability 10 * major + minor of that device (0 when unavailable)
     * @param description       device name, compute capability and driver version, or the reason
     *                          CUDA cannot be used
     */
    public record Probe(CudaDriver driver, int device, int computeCapability, String description) {

        public boolean available() {
            return driver != null;
        }

        /** Why CUDA is unavailable; empty when it is available. */
        public Optional<String> unavailableReason() {
            return available() ? Optional.empty() : Optional.of(description);
        }

        public Optional<CudaDriver> driverIfAvailable() {
            return Optional.ofNullable(driver);
        }
    }

    private static final class Holder {
        static final Probe PROBE = probe(System.getProperty("kvserve.cuda.library", CudaDriver.DEFAULT_LIBRARY),
                Integer.getInteger("kvserve.cuda.device", 0));
    }

    /** The probe of the default driver library, run on first use and cached. Never throws. */
    public static Probe probe() {
        return Holder.PROBE;
    }

    public static boolean isAvailable() {
        return probe().available();
    }

    /** The initialised driver, or empty with {@link #probe()} saying why. */
    public static Optional<CudaDriver> tryOpen() {
        return probe().driverIfAvailable();
    }

    /** Probes {@code library} for device {@code ordinal}, uncached. Never throws. */
    public static Probe probe(String library, int ordinal) {
        CudaDriver driver;
        try {
            driver = CudaDriver.load(library);
        } catch (CudaException e) {
            return unavailable(e.getMessage());
        } catch (RuntimeException | LinkageError e) {
            return unavailable("cannot bind " + library + ": " + e);
        }
        try {
            driver.init();
            int count = driver.deviceCount();
            if (count == 0) return unavailable("the CUDA driver reports no device");
            if (ordinal < 0 || ordinal >= count) {
                return unavailable("CUDA device " + ordinal + " requested but the driver reports " + count);
            }
            int device = driver.device(ordinal);
            int major = driver.deviceAttribute(CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device);
            int minor = driver.deviceAttribute(CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device);
            int cc = 10 * major + minor;
            String name = driver.deviceName(device);
            if (cc < MIN_COMPUTE_CAPABILITY) {
                return unavailable(name + " has compute capability " + major + "." + minor
                        + "; the kernels need 8.0 or newer");
            }
            int version = driver.driverVersion();
            String description = name + " (compute capability " + major + "." + minor + ", CUDA driver "
                    + version / 1000 + "." + version % 1000 / 10 + ")";
            return new Probe(driver, ordinal, cc, description);
        } catch (CudaException e) {
            return unavailable(e.getMessage());
        } catch (RuntimeException | LinkageError e) {
            return unavailable("CUDA initialisation failed: " + e);
        }
    }

    private static Probe unavailable(String reason) {
        return new Probe(null, -1, 0, reason);
    }
}
