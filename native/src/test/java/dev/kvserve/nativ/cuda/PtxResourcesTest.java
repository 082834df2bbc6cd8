package dev.kvserve.nativ.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/** The committed PTX: present for both architectures, loadable by old drivers, built from these sources. */
class PtxResourcesTest {

    @Test
    void everyModuleExistsForEveryArchitectureWithEntries() {
        for (String arch : PtxLibrary.ARCHES) {
            for (String module : PtxLibrary.MODULES) {
                String ptx = PtxLibrary.text(arch, module);
                assertThat(ptx).as(arch + "/" + module).contains(".target " + arch).contains(".address_size 64");
                assertThat(PtxLibrary.entries(ptx)).as(arch + "/" + module).isNotEmpty();
            }
        }
    }

    @Test
    void bothArchitecturesExportTheSameEntriesWithTheSameParameters() {
        for (String module : PtxLibrary.MODULES) {
            Map<String, List<String>> a = PtxLibrary.entries(PtxLibrary.text("sm_80", module));
            Map<String, List<String>> b = PtxLibrary.entries(PtxLibrary.text("sm_90", module));
            assertThat(b).as(module).isEqualTo(a);
        }
    }

    @Test
    void ptxIsaVersionIsOneThatCuda12DriversLoad() {
        for (String arch : PtxLibrary.ARCHES) {
            for (String module : PtxLibrary.MODULES) {
                String version = PtxLibrary.text(arch, module).lines().filter(l -> l.startsWith(".version "))
                        .findFirst().orElseThrow().substring(".version ".length()).strip();
                assertThat(Double.parseDouble(version)).as(arch + "/" + module + " .version").isLessThanOrEqualTo(8.0);
            }
        }
    }

    @Test
    void entryParserReadsNamesAndParameterTypes() {
        String ptx = """
                .visible .entry foo(
                \t.param .u64 .ptr .global .align 4 foo_param_0,
                \t.param .u32 foo_param_1,
                \t.param .f32 foo_param_2
                )
                {
                }
                .visible .entry bar()
                {
                }
                """;
        assertThat(PtxLibrary.entries(ptx)).containsExactly(
                Map.entry("foo", List.of("u64", "u32", "f32")), Map.entry("bar", List.of()));
    }

    /** Same hash build-ptx.sh records: per file in name order, "name\n" then its bytes. */
    @Test
    void committedPtxWasBuiltFromTheCurrentSources() throws IOException, NoSuchAlgorithmException {
        Path src = Path.of("src", "main", "cuda");
        assertThat(src).isDirectory();
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        try (Stream<Path> files = Files.list(src)) {
            for (Path f : files.sorted((x, y) -> x.getFileName().toString().compareTo(y.getFileName().toString())).toList()) {
                sha.update((f.getFileName() + "\n").getBytes(StandardCharsets.UTF_8));
                sha.update(Files.readAllBytes(f));
            }
        }
        assertThat(HexFormat.of().formatHex(sha.digest()))
                .as("PTX is stale: a .cu/.cuh changed after the PTX was built; run native/build-ptx.sh and commit")
                .isEqualTo(PtxLibrary.builtFromSources());
    }
}
