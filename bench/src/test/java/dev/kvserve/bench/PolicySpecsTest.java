package dev.kvserve.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kvcache.KvCachePolicy;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

class PolicySpecsTest {

    static Stream<Arguments> lists() {
        return Stream.of(
                Arguments.of("fp16", List.of("fp16")),
                Arguments.of("fp16,int8,sink:sinks=4,window=64", List.of("fp16", "int8", "sink:sinks=4,window=64")),
                Arguments.of("fp16,int8,int4,kivi:bits=2,sink:sinks=4,window=64",
                        List.of("fp16", "int8", "int4", "kivi:bits=2", "sink:sinks=4,window=64")),
                Arguments.of("kivi:bits=2,residual=64,group=8,fp32", List.of("kivi:bits=2,residual=64,group=8", "fp32")),
                Arguments.of("int4:group=8+sink:sinks=4,window=64,kivi", List.of("int4:group=8+sink:sinks=4,window=64", "kivi")),
                Arguments.of(" fp16 , int8:group=4 ", List.of("fp16", "int8:group=4")),
                Arguments.of("sink:window=32,sinks=2+primary,fp16+sink", List.of("sink:window=32,sinks=2+primary", "fp16+sink")));
    }

    @ParameterizedTest
    @MethodSource("lists")
    void splitsOnCommasThatStartAPolicy(String option, List<String> expected) {
        assertThat(PolicySpecs.split(option)).containsExactlyElementsOf(expected);
        // every piece is a spec the cache parses
        for (String spec : expected) assertThat(KvCachePolicy.parse(spec)).isNotNull();
    }

    @Test
    void repeatedOptionsConcatenate() {
        assertThat(PolicySpecs.split(List.of("fp16,int8", "sink:sinks=4,window=64", "kivi:bits=4")))
                .containsExactly("fp16", "int8", "sink:sinks=4,window=64", "kivi:bits=4");
    }

    @Test
    void parsedPoliciesKeepTheirParameters() {
        List<KvCachePolicy> p = PolicySpecs.parse(List.of("fp16,sink:sinks=4,window=64"));
        assertThat(p).extracting(KvCachePolicy::toString).containsExactly("fp16", "fp32+sink:sinks=4,window=64");
    }

    @Test
    void badListsAreRefusedByName() {
        assertThatThrownBy(() -> PolicySpecs.split("window=64,fp16")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("window=64").hasMessageContaining("belongs to no policy");
        assertThatThrownBy(() -> PolicySpecs.split("fp16,window=64")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("write fp16:window=64");
        assertThatThrownBy(() -> PolicySpecs.split("fp16,,int8")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("empty entry");
        assertThatThrownBy(() -> PolicySpecs.split(" ")).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> PolicySpecs.parse(List.of("fp16,fp8"))).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("unknown KV policy method 'fp8'");
        assertThatThrownBy(() -> PolicySpecs.parse(List.of("fp16,int8,fp16"))).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("listed twice");
        assertThatThrownBy(() -> PolicySpecs.parse(List.of("sink:sinks=4,windw=64"))).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("windw");
    }
}
