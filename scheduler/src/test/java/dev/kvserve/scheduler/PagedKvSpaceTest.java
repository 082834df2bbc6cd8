package dev.kvserve.scheduler;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvGeometry;
import java.util.stream.IntStream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/** Admission arithmetic against the real paged cache manager (stories260K's KV shape). */
class PagedKvSpaceTest {

    private static final KvGeometry STORIES_260K = new KvGeometry(5, 8, 4, 8, 512, new RopeConfig(8, 10000f, 1f, false));

    private static Sequence seq(long id, int length, String policy) {
        return new Sequence(id, id, IntStream.range(0, length).map(i -> 3 + (int) id * 50 + i).toArray(), policy, null);
    }

    @ParameterizedTest
    @ValueSource(strings = {"fp16", "int8", "int4", "fp32"})
    void admitsWhatTheBudgetHoldsUnderEachPolicy(String spec) {
        long budget = 400_000;
        try (var space = new PagedKvSpace(new KvCacheManager(STORIES_260K, budget))) {
            String policy = space.canonical(spec);
            var scheduler = new Scheduler(space, 64, 4096);
            for (int i = 0; i < 60; i++) scheduler.add(seq(i, 60, policy));
            scheduler.schedule();
            long perSequence = space.bytesFor(policy, 61);
            assertThat((long) scheduler.runningCount()).as(spec).isEqualTo(Math.min(60, budget / perSequence));
        }
    }

    @Test
    void aCompressedPolicyAdmitsMoreSequencesInTheSameBudget() {
        int[] admitted = new int[2];
        String[] specs = {"fp16", "int4"};
        for (int p = 0; p < 2; p++) {
            try (var space = new PagedKvSpace(new KvCacheManager(STORIES_260K, 300_000))) {
                var scheduler = new Scheduler(space, 64, 4096);
                for (int i = 0; i < 60; i++) scheduler.add(seq(i, 100, space.canonical(specs[p])));
                scheduler.schedule();
                admitted[p] = scheduler.runningCount();
            }
        }
        assertThat(admitted[1]).isGreaterThan(admitted[0]);
    }

    @Test
    void policiesAreCanonicalAndCheckedAgainstTheModel() {
        try (var space = new PagedKvSpace(new KvCacheManager(STORIES_260K, 100_000))) {
            assertThat(space.canonical(" int4 ")).isEqualTo(space.canonical("int4:group=head"));
            assertThatThrownBy(() -> space.canonical("int5")).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("int5");
            assertThat(space.canFork(space.canonical("int4"))).isTrue();
            assertThat(space.canFork(space.canonical("fp16+sink:sinks=4,window=64"))).isFalse();
        }
    }
}
