package dev.kvserve.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.cpu.CpuBackend;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class NeedleTaskTest {

    static Backend backend;
    static LlamaModel model;
    static NeedleTask task;

    @BeforeAll
    static void load() throws Exception {
        backend = new CpuBackend(1);
        model = LlamaModel.load(Shared.stories260K(), backend, 1);
        String filler = Files.readString(Shared.tinyStoriesText()).substring(0, 20_000);
        task = new NeedleTask(model.tokenizer(), filler, NeedleTask.DEFAULT_NEEDLE, NeedleTask.DEFAULT_QUESTION);
    }

    @AfterAll
    static void close() {
        model.close();
        backend.close();
    }

    @ParameterizedTest
    @ValueSource(doubles = {0.0, 0.25, 0.5, 1.0})
    void promptsFitTheLengthAndHideTheNeedleAtTheDepth(double depth) {
        Tokenizer tok = model.tokenizer();
        for (NeedleTask.Trial t : task.trials(160, depth, 5, 11, true)) {
            assertThat(t.prompt().length).isLessThanOrEqualTo(160).isGreaterThan(100);
            assertThat(t.prompt()[0]).isEqualTo(tok.bos());
            String text = tok.decode(t.prompt());
            String needle = String.format(NeedleTask.DEFAULT_NEEDLE, t.name());
            assertThat(text).contains(needle).endsWith(NeedleTask.DEFAULT_QUESTION);
            // the name appears nowhere but in the needle
            assertThat(text.indexOf(t.name())).isEqualTo(text.lastIndexOf(t.name()));
            String afterNeedle = text.substring(text.indexOf(needle) + needle.length()).strip();
            if (depth == 0) assertThat(t.needleIndex()).isEqualTo(1);
            else assertThat(t.needleIndex()).isGreaterThan(1);
            if (depth == 1) assertThat(afterNeedle).isEqualTo(NeedleTask.DEFAULT_QUESTION);
            else assertThat(afterNeedle.length()).isGreaterThan(NeedleTask.DEFAULT_QUESTION.length() + 20);
            // whole sentences shift it, but the needle sits roughly at the depth
            assertThat(t.needleIndex() / (double) t.prompt().length).isBetween(depth - 0.3, depth + 0.3);
            String fromNeedle = tok.decode(Arrays.copyOfRange(t.prompt(), t.needleIndex(), t.prompt().length)).stripLeading();
            assertThat(fromNeedle).startsWith(needle);
        }
    }

    @Test
    void baselinePromptsHaveNoNeedleButTheSameQuestion() {
        List<NeedleTask.Trial> with = task.trials(128, 0.5, 4, 3, true);
        List<NeedleTask.Trial> without = task.trials(128, 0.5, 4, 3, false);
        for (int i = 0; i < with.size(); i++) {
            assertThat(without.get(i).name()).isEqualTo(with.get(i).name());
            assertThat(without.get(i).needleIndex()).isEqualTo(-1);
            String text = model.tokenizer().decode(without.get(i).prompt());
            assertThat(text).doesNotContain(without.get(i).name()).endsWith(NeedleTask.DEFAULT_QUESTION);
        }
    }

    @Test
    void answersAreScoredOnTheirFirstWord() {
        assertThat(NeedleTask.startsWithName(" Mia.", "Mia")).isTrue();
        assertThat(NeedleTask.startsWithName("Mia", "Mia")).isTrue();
        assertThat(NeedleTask.startsWithName(" Miami", "Mia")).isFalse();
        assertThat(NeedleTask.startsWithName(" Lily and Mia", "Mia")).isFalse();
    }

    @Test
    void theModelAnswersFromItsCacheAndEvictionForgetsTheNeedle() {
        try (KvCacheManager kvm = new KvCacheManager(model.kvGeometry(), 1L << 30)) {
            // needle right before the question: the easiest case, which this tiny model does get right sometimes
            List<NeedleTask.Trial> trials = task.trials(64, 1.0, 8, 5, true);
            int fp16Correct = 0;
            for (NeedleTask.Trial t : trials) {
                NeedleTask.Outcome o = task.ask(model, kvm, KvCachePolicy.parse("fp16"), t, 64);
                assertThat(o.bytesHeld()).isEqualTo(o.fp16Bytes());
                if (o.correct()) fp16Correct++;
            }
            assertThat(fp16Correct).isPositive();
            // a needle 40+ tokens back is outside a 1 + 8 token window: the cache keeps a fraction of the prompt
            NeedleTask.Trial far = task.trials(96, 0.0, 1, 5, true).getFirst();
            NeedleTask.Outcome evicted = task.ask(model, kvm, KvCachePolicy.parse("fp16+sink:sinks=1,window=8"), far, 16);
            assertThat(evicted.bytesHeld()).isLessThan(evicted.fp16Bytes() / 3);
            assertThat(kvm.stats().sequences()).isZero();
        }
    }

    @Test
    void badSettingsAreRefused() {
        assertThatThrownBy(() -> task.trials(8, 0.5, 1, 1, true)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("--len 8");
        assertThatThrownBy(() -> task.trials(128, 1.5, 1, 1, true)).hasMessageContaining("--depth");
        assertThatThrownBy(() -> new NeedleTask(model.tokenizer(), "x", "no slot", "?")).hasMessageContaining("%s");
    }
}
