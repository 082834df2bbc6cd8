package dev.kvserve.nativ.cpu;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * The committed library and its binding. The kernels' arithmetic is tested against the scalar
 * reference in the kernels module (CpuBackendTest), where that reference lives.
 */
class CpuKernelsTest {

    /** Same hash build-cpu.sh records: per file in name order, "name\n" then its bytes. */
    @Test
    void committedLibraryWasBuiltFromTheCurrentSources() throws IOException, NoSuchAlgorithmException {
        Path src = Path.of("src", "main", "c");
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        try (Stream<Path> files = Files.list(src)) {
            List<Path> sorted = files.sorted((x, y) -> x.getFileName().toString().compareTo(y.getFileName().toString())).toList();
            assertThat(sorted).isNotEmpty();
            for (Path f : sorted) {
                sha.update((f.getFileName() + "\n").getBytes(StandardCharsets.UTF_8));
                sha.update(Files.readAllBytes(f));
            }
        }
        Path res = Path.of("src", "main", "resources", "dev", "kvserve", "nativ", "cpu", "linux-x86_64");
        assertThat(res.resolve("libkvserve_cpu.so")).isRegularFile();
        assertThat(Files.readString(res.resolve("SOURCES.sha256")).strip())
                .as("libkvserve_cpu.so is stale: run native/build-cpu.sh and commit the result")
                .isEqualTo(HexFormat.of().formatHex(sha.digest()));
    }

    /** Loads wherever the library can run: x86-64 Linux with AVX2, FMA and F16C (this project's CI machines). */
    @Test
    void loadsOnX86LinuxWithAvx2() throws IOException {
        Path cpuinfo = Path.of("/proc/cpuinfo");
        Assumptions.assumeTrue(System.getProperty("os.arch").matches("amd64|x86_64") && Files.exists(cpuinfo), "not x86-64 Linux");
        String flags = Files.readAllLines(cpuinfo).stream().filter(l -> l.startsWith("flags")).findFirst().orElse("");
        List<String> have = List.of(flags.replaceFirst("^flags\\s*:", "").strip().split("\\s+"));
        CpuKernels.Probe probe = CpuKernels.probe();
        if (!have.containsAll(List.of("avx2", "fma", "f16c"))) {
            assertThat(probe.available()).isFalse();
            return;
        }
        assertThat(probe.available()).as(probe.description()).isTrue();
        int expected = have.containsAll(List.of("avx512_vnni", "avx512vl", "avx512bw")) ? CpuKernels.ISA_AVX512_VNNI : CpuKernels.ISA_AVX2;
        assertThat(probe.kernels().isa()).isEqualTo(expected);
        assertThat(probe.description()).isEqualTo(CpuKernels.isaName(expected));
    }

    @Test
    void quantizesOneBlockAsGgmlDoes() {
        CpuKernels k = kernels();
        try (Arena arena = Arena.ofConfined()) {
            float[] x = new float[32];
            for (int i = 0; i < 32; i++) x[i] = (i - 10) * 0.25f;   // max |x| = 5.25 at i = 31
            MemorySegment q = arena.allocate(32), d = arena.allocate(4), s = arena.allocate(36);
            k.quantize(MemorySegment.ofArray(x), 32, 1, 32, q, d, s);
            float scale = Float.float16ToFloat(Float.floatToFloat16(5.25f / 127));
            assertThat(d.get(ValueLayout.JAVA_FLOAT, 0)).isEqualTo(scale);
            for (int i = 0; i < 32; i++) {
                assertThat(q.get(ValueLayout.JAVA_BYTE, i)).as("quant %d", i).isEqualTo((byte) Math.rint(x[i] * (127f / 5.25f)));
            }
            assertThat(q.get(ValueLayout.JAVA_BYTE, 31)).isEqualTo((byte) 127);
            int total = 0;
            for (int run = 0; run < 8; run++) {
                int sum = 0;
                for (int i = 4 * run; i < 4 * run + 4; i++) sum += q.get(ValueLayout.JAVA_BYTE, i);
                assertThat(s.getAtIndex(ValueLayout.JAVA_INT, run)).as("run %d", run).isEqualTo(-8 * sum);
                total += sum;
            }
            assertThat(s.getAtIndex(ValueLayout.JAVA_INT, 8)).as("block").isEqualTo(-8 * total);
        }
    }

    @Test
    void aQ8_0RowTimesQuantizedActivationsIsTheScaledIntegerDot() {
        CpuKernels k = kernels();
        try (Arena arena = Arena.ofConfined()) {
            // One block: d = 0.5, quants 1..32; activations all 1.0 quantize to 127 with scale 1/127.
            MemorySegment w = arena.allocate(34);
            w.set(ValueLayout.JAVA_SHORT_UNALIGNED, 0, Float.floatToFloat16(0.5f));
            for (int i = 0; i < 32; i++) w.set(ValueLayout.JAVA_BYTE, 2 + i, (byte) (i + 1));
            float[] ones = new float[32];
            java.util.Arrays.fill(ones, 1f);
            MemorySegment q = arena.allocate(32), d = arena.allocate(4), s = arena.allocate(36), out = arena.allocate(4);
            k.quantize(MemorySegment.ofArray(ones), 32, 1, 32, q, d, s);
            k.matmul(false, w, 34, 1, q, d, s, 32, 1, out, 1);
            float dx = Float.float16ToFloat(Float.floatToFloat16(1f / 127));
            assertThat(out.get(ValueLayout.JAVA_FLOAT, 0)).isEqualTo(0.5f * dx * 127 * (32 * 33 / 2));
        }
    }

    @Test
    void sizesThatDoNotFitAreExceptionsNotCrashes() {
        CpuKernels k = kernels();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment q = arena.allocate(64), d = arena.allocate(8), s = arena.allocate(72), out = arena.allocate(8);
            MemorySegment x = arena.allocate(64 * 4);
            assertThatThrownBy(() -> k.quantize(x, 64, 2, 64, q, d, s)).isInstanceOf(IndexOutOfBoundsException.class)
                    .hasMessageContaining("activations");
            assertThatThrownBy(() -> k.quantize(x, 48, 1, 48, q, d, s)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("multiple of 32");
            MemorySegment w = arena.allocate(2 * 36 - 1);   // two Q4_0 rows of 64 values, one byte short
            k.quantize(x, 64, 1, 64, q, d, s);
            assertThatThrownBy(() -> k.matmul(true, w, 36, 2, q, d, s, 64, 1, out, 2))
                    .isInstanceOf(IndexOutOfBoundsException.class).hasMessageContaining("weights");
            assertThatThrownBy(() -> k.matmul(true, arena.allocate(72), 36, 2, q, d, s, 64, 1, arena.allocate(4), 2))
                    .isInstanceOf(IndexOutOfBoundsException.class).hasMessageContaining("output");
            assertThatThrownBy(() -> k.matmul(false, arena.allocate(136), 68, 2, q, d, s, 64, 2, out, 2))
                    .isInstanceOf(IndexOutOfBoundsException.class).hasMessageContaining("quants");
            assertThatThrownBy(() -> k.repackX8(true, arena.allocate(8 * 36), 36, 1, 64, arena.allocate(8 * 36 - 1)))
                    .isInstanceOf(IndexOutOfBoundsException.class).hasMessageContaining("repacked");
            assertThatThrownBy(() -> k.matmulX8(false, arena.allocate(8 * 68), 1, q, d, s, 64, 1, arena.allocate(28), 8))
                    .isInstanceOf(IndexOutOfBoundsException.class).hasMessageContaining("output");
        }
    }

    private static CpuKernels kernels() {
        CpuKernels.Probe probe = CpuKernels.probe();
        Assumptions.assumeTrue(probe.available(), () -> "int8 kernels unavailable: " + probe.description());
        return probe.kernels();
    }
}
