package dev.kvserve.http;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kvcache.KvCachePolicy;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The trust boundary: what a request's kv_policy may and may not set. */
class KvPolicyGateTest {

    private static final KvPolicyGate DEFAULTS = KvPolicyGate.defaults();

    @ParameterizedTest
    @ValueSource(strings = {"fp16", "int4:group=8", "kivi:bits=2,residual=32", "int8+sink:sinks=4,window=64",
            "int4+h2o:budget=0.25", "fp16+quest:budget=64,page=16", "int8+l2:budget=0.5,skip=0"})
    void aClientMayChooseHowItsCacheIsCompressed(String spec) {
        assertThat(DEFAULTS.resolve(spec)).isEqualTo(spec);
    }

    @ParameterizedTest
    @ValueSource(strings = {"kvquant:calib=/etc/passwd", "cq:calib=x.cq,bits=1", "aqua:calib=/dev/zero",
            "int8+offload:ssd=/proc/x", "fp16+offload:host=64GiB", "fp16+offload:io_threads=64",
            "fp16+offload:csd_threads=64", "fp16+offload:csd_memory=8GiB", "fp16+offload:prefetch_budget=1GiB",
            "fp16+offload:ssd_budget=1TiB", "fp16+offload:resident=1GiB"})
    void noClientSpecNamesOrSizesAServerResource(String spec) {
        assertThatThrownBy(() -> DEFAULTS.resolve(spec))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("only the server's operator sets")
                .satisfies(e -> assertThat(e.getMessage()).doesNotContain("/etc", "/proc", "/dev", "x.cq"));
    }

    @Test
    void aCalibratedMethodWithoutItsFileNeedsAProfile() {
        assertThatThrownBy(() -> DEFAULTS.resolve("kvquant:bits=3"))
                .hasMessage("'kvquant' needs 'calib', which only the server's operator sets");
        KvPolicyGate gate = new KvPolicyGate(Map.of("kvq3", "kvquant:bits=3,calib=/srv/kvq3.kvq"), null, Map.of());
        assertThatThrownBy(() -> gate.resolve("kvquant:bits=3"))
                .hasMessageEndingWith("; the server's KV profiles: kvq3");
    }

    @Test
    void aProfileNameResolvesToTheOperatorsSpec() {
        KvPolicyGate gate = new KvPolicyGate(Map.of("kvq3", "kvquant:bits=3,calib=/srv/kvq3.kvq",
                "big", "int4+offload:host=2GiB,ssd=/srv/kv"), Set.of(), Map.of());
        assertThat(gate.resolve("kvq3")).isEqualTo("kvquant:bits=3,calib=/srv/kvq3.kvq");
        assertThat(gate.resolve(" big ")).isEqualTo("int4+offload:host=2GiB,ssd=/srv/kv");
        // --kv-allow none: profiles only
        assertThatThrownBy(() -> gate.resolve("int4"))
                .hasMessageStartingWith("method 'int4' is not enabled on this server; clients may not write their own KV policy"
                        + "; the server's KV profiles: ")
                .hasMessageContaining("kvq3").hasMessageContaining("big");
    }

    @Test
    void kvAllowRestrictsTheMethodsOfAClientsOwnSpec() {
        KvPolicyGate gate = new KvPolicyGate(Map.of(), Set.of("int4", "sink"), Map.of());
        assertThat(gate.resolve("int4:group=8+sink:window=32")).isEqualTo("int4:group=8+sink:window=32");
        assertThatThrownBy(() -> gate.resolve("int8")).hasMessage("method 'int8' is not enabled on this server; enabled: int4, sink");
        assertThatThrownBy(() -> new KvPolicyGate(Map.of(), Set.of("zip"), Map.of()))
                .hasMessageStartingWith("unknown KV policy method 'zip'");
    }

    @Test
    void offloadRunsOnTheOperatorsSharedResourcesOnly() {
        assertThatThrownBy(() -> DEFAULTS.resolve("int4+offload"))
                .hasMessage("the offload tier is not enabled on this server (the operator's --kv-offload)");
        Map<String, String> resources = new LinkedHashMap<>();
        resources.put("host", "64MiB");
        resources.put("ssd", "/srv/kv");
        KvPolicyGate gate = new KvPolicyGate(Map.of(), null, resources);
        String resolved = gate.resolve("int4+offload:prefetch=false");
        assertThat(KvCachePolicy.parse(resolved).tier().params().values())
                .containsEntry("host", 64L << 20).containsEntry("ssd", "/srv/kv").containsEntry("prefetch", false);
        assertThat(gate.offloadTier()).isEqualTo("offload:host=64MiB,ssd=/srv/kv");
        assertThatThrownBy(() -> new KvPolicyGate(Map.of(), null, Map.of("prefetch", "true")))
                .hasMessageStartingWith("'prefetch' is not an operator parameter of the offload tier");
    }

    @Test
    void profileNamesAreShortWordsThatNoMethodHas() {
        for (String bad : List.of("", "a b", "../x", "int4", "x".repeat(65), "-x")) {
            assertThatThrownBy(() -> KvPolicyGate.checkProfileName(bad)).isInstanceOf(IllegalArgumentException.class);
        }
        KvPolicyGate.checkProfileName("kvq3.long-ctx_v2");
    }

    @Test
    void syntaxErrorsKeepTheParsersMessages() {
        assertThatThrownBy(() -> DEFAULTS.resolve("zip9")).hasMessageStartingWith("unknown KV policy method 'zip9'; valid: ");
        assertThatThrownBy(() -> DEFAULTS.resolve("sink+int4")).hasMessageContaining("must come before");
    }
}
