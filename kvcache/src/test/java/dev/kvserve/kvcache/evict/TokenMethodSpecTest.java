package dev.kvserve.kvcache.evict;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.kvcache.KvGeometry;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Spec strings of the token-level methods: defaults, canonical form, composition, bad input. */
class TokenMethodSpecTest {

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "l2 | fp32+l2:budget=0.5,sinks=0,window=0,skip=0;1",
            "hashevict | fp32+hashevict:budget=0.5,sinks=4,window=10,bits=16,score=current,seed=0",
            "d2o | fp32+d2o:budget=0.2,window=0.1,sinks=4,skip=0;1;-1,alpha=0.5,beta=0.5,merge=paper",
            "h2o | fp32+h2o:budget=0.2,window=0.1,sinks=0,reduce=sum",
            "snapkv | fp32+snapkv:budget=2048,sinks=0,window=32,kernel=5,pooling=avg",
            "quest | fp32+quest:budget=1024,page=16,skip=0;1",
            "clusterkv | fp32+clusterkv:budget=1024,sinks=16,clusters=400,iterations=20,window=320,window_clusters=8,skip=0;1,gqa=head,seed=0",
            "int4+clusterkv:budget=256 | int4:group=head+clusterkv:budget=256,sinks=16,clusters=400,iterations=20,window=320,window_clusters=8,skip=0;1,gqa=head,seed=0",
            "fp16+h2o:budget=0.25,window=16+quest:budget=64,skip=none | fp16+h2o:budget=0.25,window=16,sinks=0,reduce=sum+quest:budget=64,page=16,skip=none",
            "l2:budget=1.0,skip=-1 | fp32+l2:budget=1.0,sinks=0,window=0,skip=-1",
    })
    void parsesToCanonicalSpec(String spec, String canonical) {
        KvCachePolicy p = KvCachePolicy.parse(spec);
        assertThat(p.toString()).isEqualTo(canonical);
        assertThat(KvCachePolicy.parse(canonical)).isEqualTo(p);
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "l2:budget=0 | bad value '0' for parameter 'budget' of 'l2'",
            "l2:budget=1.5 | a fraction must be in (0, 1]",
            "h2o:budget=lots | not a number, expected a token count >= 1 or a fraction",
            "l2:skip=a | 'a' is not a layer index",
            "hashevict:bits=65 | bad value '65' for parameter 'bits' of 'hashevict'",
            "hashevict:score=sum | expected one of [current, accumulated]",
            "d2o:merge=avg | expected one of [paper, code, none]",
            "snapkv:budget=32,window=32 | snapkv budget (32) must exceed the observation window (32)",
            "quest+h2o | eviction rule 'h2o' must come before the token selector",
            "clusterkv:gqa=max | expected one of [head, avg]",
    })
    void rejectsBadSpecsWithAClearMessage(String spec, String message) {
        assertThatThrownBy(() -> KvCachePolicy.parse(spec)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining(message);
    }

    @Test
    void layerOutsideTheModelIsRejectedWhenASequenceOpens() {
        KvGeometry g = new KvGeometry(2, 2, 1, 8, 512, new RopeConfig(8, 10000f, 1f, true));
        try (KvCacheManager m = new KvCacheManager(g, 1 << 20)) {
            assertThatThrownBy(() -> m.open("l2:skip=2")).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("layer 2 does not exist in a model of 2 layers");
            assertThatThrownBy(() -> m.open("quest:skip=-3")).hasMessageContaining("layer -3 does not exist");
            m.open("d2o").close();
        }
    }

    @Test
    void budgetsResolveTokensAndFractions() {
        assertThat(Budget.parse("256").tokensFor(1000)).isEqualTo(256);
        assertThat(Budget.parse("0.25").tokensFor(1000)).isEqualTo(250);
        assertThat(Budget.parse("0.25").tokensFor(3)).isEqualTo(1);
        assertThat(Budget.parse("1.0").tokensFor(77)).isEqualTo(77);
        assertThat(Budget.parse("0.1").tokensFor(30)).isEqualTo(3);
        assertThat(LayerSet.parse("0;1;-1").resolve(5)).containsExactly(true, true, false, false, true);
        assertThat(LayerSet.parse("none").resolve(3)).containsExactly(false, false, false);
    }
}
