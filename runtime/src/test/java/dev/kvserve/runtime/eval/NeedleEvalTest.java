package dev.kvserve.runtime.eval;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.Backends;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.runtime.SharedModels;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.tokenizer.Tokenizer;
import java.util.Arrays;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The needle-in-a-haystack generator and the retrieval eval on the real stories260K model. */
class NeedleEvalTest {

    static Backend backend;
    static LlamaModel model;

    @BeforeAll
    static void load() {
        backend = Backends.select("cpu", 2);
        model = LlamaModel.load(SharedModels.file("stories260K.gguf"), backend, 1);
    }

    @AfterAll
    static void close() throws Exception {
        model.close();
        backend.close();
    }

    @ParameterizedTest
    @ValueSource(doubles = {0.0, 0.25, 0.5, 0.75, 1.0})
    void promptHidesOneNeedleAtTheRequestedDepthWithinTheLength(double depth) {
        Tokenizer tok = model.tokenizer();
        NeedleTask.Sample s = NeedleTask.generate(tok, 160, depth, 42, true, NeedleTask.Cue.I_AM);
        assertThat(s.prompt().length).isLessThanOrEqualTo(160).isGreaterThan(130);
        assertThat(s.text().split("\\b" + s.needle() + "\\b", -1)).as("the name occurs exactly once").hasSize(2);
        double at = (double) s.needleToken() / s.haystack().length;
        // sentence granularity: a sentence is about a tenth of this haystack
        assertThat(at).isBetween(depth - 0.15, depth + 0.1);
        assertThat(tok.decode(Arrays.copyOfRange(s.haystack(), s.needleToken(), s.haystack().length))).contains("named " + s.needle());
        assertThat(NeedleTask.generate(tok, 160, depth, 42, true, NeedleTask.Cue.I_AM).text()).isEqualTo(s.text());
        NeedleTask.Sample control = NeedleTask.generate(tok, 160, depth, 42, false, NeedleTask.Cue.I_AM);
        for (String name : NeedleTask.NAMES) assertThat(NeedleTask.retrieved(control.text(), name)).isFalse();
        assertThat(NeedleTask.retrieved("He said, \"I am Maxine", "Max")).isFalse();
        assertThat(NeedleTask.retrieved("I am Max.", "Max")).isTrue();
    }

    @Test
    void tooShortALengthIsRejected() {
        assertThatThrownBy(() -> NeedleTask.generate(model.tokenizer(), 20, 0.5, 1, true, NeedleTask.Cue.I_AM))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("leaves no room for a haystack");
        try (KvCacheManager kvm = new KvCacheManager(model.kvGeometry(), 64 << 20)) {
            assertThatThrownBy(() -> NeedleEval.run(model, kvm, "fp32", NeedleEval.Config.of(2040, 0.5)))
                    .hasMessageContaining("exceeds the model's context");
        }
    }

    @Test
    void fullCacheRetrievesTheNeedleAndAWindowThatDropsItDoesNot() {
        NeedleEval.Config config = new NeedleEval.Config(200, 0.3, 4, 1000, NeedleEval.QuestionMode.DECODE, NeedleTask.Cue.I_AM, 8);
        try (KvCacheManager kvm = new KvCacheManager(model.kvGeometry(), 64 << 20)) {
            NeedleEval.Result full = NeedleEval.run(model, kvm, "fp32", config);
            NeedleEval.Result control = NeedleEval.run(model, kvm, null, config);
            NeedleEval.Result window = NeedleEval.run(model, kvm, "sink:sinks=4,window=48", config);
            NeedleEval.Result quest = NeedleEval.run(model, kvm, "quest:budget=64", config);
            assertThat(full.hits()).as("answers %s", full.answers()).isGreaterThanOrEqualTo(2);
            assertThat(control.hits()).as("the names do not come by chance: %s", control.answers()).isZero();
            assertThat(window.hits()).as("the needle left the window: %s", window.answers()).isZero();
            assertThat(quest.hits()).as("quest reads the needle's page: %s", quest.answers()).isPositive();
            assertThat(window.keptTokens()).isEqualTo(52.0);
            assertThat(window.peakBytes()).isLessThan(full.peakBytes() / 2);
            assertThat(full.policy()).isEqualTo("fp32");
            assertThat(kvm.stats().sequences()).isZero();
        }
    }
}
