package dev.kvserve.kvcache;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kernels.RopeConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class KvCachePolicyTest {

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "fp32 | fp32",
            "fp16 | fp16",
            "int8 | int8:group=head",
            "int4:group=32 | int4:group=32",
            "int4:group=head | int4:group=head",
            "kivi:bits=2 | kivi:bits=2,group=32,residual=128",
            "kivi:residual=64,bits=4 | kivi:bits=4,group=32,residual=64",
            "sink:sinks=4,window=64 | fp32+sink:sinks=4,window=64",
            "sink | fp32+sink:sinks=4,window=1020",
            " int4:group=8 + sink: window = 64 , sinks=2 | int4:group=8+sink:sinks=2,window=64",
            "fp16+primary | fp16",
            "kivi:bits=2+sink:sinks=4,window=64+primary | kivi:bits=2,group=32,residual=128+sink:sinks=4,window=64",
    })
    void parsesToCanonicalSpec(String spec, String canonical) {
        KvCachePolicy p = KvCachePolicy.parse(spec);
        assertThat(p.toString()).isEqualTo(canonical);
        assertThat(KvCachePolicy.parse(p.toString())).isEqualTo(p);
        assertThat(p.tier().primaryTier()).isEqualTo("primary");
    }

    @Test
    void partsThatCannotRunTogetherAreRefusedWhenComposed() {
        assertThatThrownBy(() -> KvCachePolicy.parse("fp16+sink:window=64+offload:ssd=/tmp/x,csd=true"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageStartingWith("offload with csd=true cannot run with an eviction rule ('sink')");
        // Refused before the tier is built: no directory is created for a policy that cannot run.
        assertThat(java.nio.file.Files.exists(java.nio.file.Path.of("/tmp/x"))).isFalse();
        assertThat(KvCachePolicy.parse("fp16+sink:window=64+offload:host=1MiB").tier().spec()).startsWith("offload:");
    }

    @Test
    void theWrittenFormKnowsWhichParametersAreTheOperators() {
        var spec = KvPolicySpec.parse("kvquant:calib=/srv/a.kvq,bits=3+sink:window=8+offload:ssd=/srv/kv,prefetch=false");
        assertThat(spec.parts()).extracting(p -> p.operatorParams()).containsExactly(
                java.util.List.of("calib"), java.util.List.of(), java.util.List.of("ssd"));
        assertThat(KvPolicySpec.parse("kvquant:bits=3").parts().getFirst().missingOperatorParams()).containsExactly("calib");
        assertThat(spec.toString()).isEqualTo("kvquant:calib=/srv/a.kvq,bits=3+sink:window=8+offload:ssd=/srv/kv,prefetch=false");
    }

    @Test
    void exposesParts() {
        KvCachePolicy p = KvCachePolicy.parse("int4:group=8+sink:sinks=2,window=16");
        assertThat(p.format().params().getInt("group")).isEqualTo(8);
        assertThat(p.eviction()).isPresent();
        assertThat(p.eviction().get().params().values().get("window")).isEqualTo(dev.kvserve.kvcache.evict.Budget.ofTokens(16));
        assertThat(p.selector()).isEmpty();
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "'' | empty KV policy spec",
            "fp8 | unknown KV policy method 'fp8'; valid: storage formats: ",
            "int4:grp=32 | unknown parameter 'grp' for 'int4'; valid: group (an integer >= 1 or 'head', default head)",
            "int4:group=x | bad value 'x' for parameter 'group' of 'int4': not an integer, expected an integer >= 1 or 'head'",
            "int4:group=0 | bad value '0' for parameter 'group' of 'int4'",
            "kivi:bits=3 | bad value '3' for parameter 'bits' of 'kivi': not allowed, expected one of [2, 4]",
            "sink:window=-1 | bad value '-1' for parameter 'window' of 'sink'",
            "sink+int4 | storage format 'int4' must come before the eviction rule",
            "fp16+int4 | has two storage formats",
            "int4: | 'int4:' has no parameters",
            "int4:group | parameter 'group' of 'int4' must be written key=value",
            "int4:group=8,group=8 | parameter 'group' given twice for 'int4'",
            "fp16++sink | empty part in KV policy spec",
            "fp16:bits=4 | unknown parameter 'bits' for 'fp16'; valid: (none)",
            "sink:sinks=4,window=64+sink | has two eviction rules",
    })
    void rejectsWithMessage(String spec, String message) {
        assertThatThrownBy(() -> KvCachePolicy.parse(spec))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(message);
    }

    @Test
    void unknownNameListsEveryKind() {
        assertThatThrownBy(() -> KvCachePolicy.parse("nosuchmethod"))
                .hasMessageContaining("storage formats: ")
                .hasMessageContaining("kivi:bits=2,group=32,residual=128")
                .hasMessageContaining("eviction rules: ")
                .hasMessageContaining("sink:sinks=4,window=1020")
                .hasMessageContaining("tier placements: ")
                .hasMessageContaining("primary")
                .hasMessageContaining("offload:host=1GiB,ssd=none");
    }

    @Test
    void formatThatDoesNotFitTheModelIsRejectedWhenOpened() {
        KvGeometry g = new KvGeometry(1, 2, 1, 8, 64, new RopeConfig(8, 10000f, 1f, false));
        try (KvCacheManager m = new KvCacheManager(g, 1 << 20)) {
            assertThatThrownBy(() -> m.open("int4:group=32"))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("group=32 must divide the head size 8");
            assertThatThrownBy(() -> m.open("kivi:group=3"))
                    .hasMessageContaining("kivi: group=3 and the block size 16 tokens must divide one another");
            assertThatThrownBy(() -> m.open("int3:group=4"))
                    .hasMessageContaining("int3: group=4 of 3-bit codes is not whole bytes");
            assertThat(m.open("int4:group=4").policy().toString()).isEqualTo("int4:group=4");
            assertThat(m.open("int3").policy().toString()).isEqualTo("int3:group=head");
            // 8 three-bit codes in 3 bytes + fp16 scale and minimum, for K and V, 16 slots a block
            assertThat(m.bytesFor(KvCachePolicy.parse("int3"), 16)).isEqualTo(2 * 16 * (3 + 4));
            assertThat(m.stats().sequences()).isEqualTo(2);
        }
    }
}
