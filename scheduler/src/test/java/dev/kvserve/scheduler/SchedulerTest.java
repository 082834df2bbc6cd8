package dev.kvserve.scheduler;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * Scheduling decisions on a clock-free harness: a real block pool (test-sized) and a "model" that
 * only advances caches, so each step's plan can be checked exactly.
 */
class SchedulerTest {

    /**
     * 4-token blocks; "f16" costs 16 bytes a token, "q4" 4 bytes (a quarter, like a 4-bit cache), "s4" 4
     * bytes with a lower tier to swap to (like {@code int4+offload:host=...}).
     */
    private static BlockPool pool(long capacity) {
        return new BlockPool(4, capacity, Map.of("f16", 16, "q4", 4, "s4", 4)).swappable("s4");
    }

    private long nextId;

    private Sequence seq(int promptLength, String policy) {
        return seq(IntStream.range(0, promptLength).map(i -> 1000 + (int) nextId * 100 + i).toArray(), policy);
    }

    private Sequence seq(int[] prompt, String policy) {
        long id = nextId++;
        return new Sequence(id, id, prompt, policy, null);
    }

    /** Runs a plan as the engine would: the model fills the caches, sampled tokens are appended. */
    private static Scheduler.Plan step(Scheduler scheduler) {
        Scheduler.Plan plan = scheduler.schedule();
        for (var item : plan.items()) {
            assertThat(item.seq().kv().length()).as("cache length before the step").isEqualTo(item.start());
            item.seq().kv().advance(item.count());
        }
        scheduler.completed(plan);
        for (var item : plan.items()) {
            if (item.samples()) item.seq().append(7 + item.seq().generatedCount());
        }
        return plan;
    }

    @Test
    void admitsOnlyWhatThePoolHoldsAndACompressedPolicyAdmitsMore() {
        // 16-token prompts: 5 f16 blocks (prompt + first decode) = 320 bytes each under f16, 80 under q4.
        for (String policy : List.of("f16", "q4")) {
            var pool = pool(1000);
            var scheduler = new Scheduler(pool, 64, 4096);
            for (int i = 0; i < 20; i++) scheduler.add(seq(16, policy));
            step(scheduler);
            int expected = policy.equals("f16") ? 3 : 12;
            assertThat(scheduler.runningCount()).as(policy).isEqualTo(expected);
            assertThat(scheduler.waitingCount()).as(policy).isEqualTo(20 - expected);
            assertThat(pool.usedBytes()).isLessThanOrEqualTo(1000);
        }
    }

    @Test
    void chunkedPrefillRespectsTheStepTokenBudget() {
        var scheduler = new Scheduler(pool(1 << 20), 8, 8);
        Sequence a = seq(20, "f16");
        Sequence b = seq(5, "f16");
        scheduler.add(a);
        scheduler.add(b);

        var plan1 = step(scheduler);
        assertThat(plan1.items()).extracting(i -> i.seq().id, Scheduler.Item::count, Scheduler.Item::samples)
                .containsExactly(org.assertj.core.groups.Tuple.tuple(a.id, 8, false));
        var plan2 = step(scheduler);
        assertThat(plan2.tokens()).isEqualTo(8);
        assertThat(plan2.items()).extracting(Scheduler.Item::count).containsExactly(8);
        // a has 4 prompt tokens left: they and the first 4 of b fill the budget.
        var plan3 = step(scheduler);
        assertThat(plan3.items()).extracting(i -> i.seq().id, Scheduler.Item::start, Scheduler.Item::count, Scheduler.Item::samples)
                .containsExactly(org.assertj.core.groups.Tuple.tuple(a.id, 16, 4, true),
                        org.assertj.core.groups.Tuple.tuple(b.id, 0, 4, false));
        assertThat(a.state()).isEqualTo(Sequence.State.RUNNING);
        assertThat(a.generatedCount()).isEqualTo(1);
        // Decodes come first, then the rest of b's prompt.
        var plan4 = step(scheduler);
        assertThat(plan4.items()).extracting(i -> i.seq().id, Scheduler.Item::count, Scheduler.Item::samples)
                .containsExactly(org.assertj.core.groups.Tuple.tuple(a.id, 1, true),
                        org.assertj.core.groups.Tuple.tuple(b.id, 1, true));
        var plan5 = step(scheduler);
        assertThat(plan5.items()).extracting(Scheduler.Item::count).containsExactly(1, 1);
        assertThat(plan5.items()).allMatch(Scheduler.Item::samples);
    }

    @Test
    void aLongPrefillLeavesRoomForTheHeadOfTheQueueAndTakesTheWholeBudgetAlone() {
        var scheduler = new Scheduler(pool(1 << 20), Preemption.RECOMPUTE, 8, 16, 4);
        Sequence longPrompt = seq(64, "f16");
        scheduler.add(longPrompt);
        assertThat(step(scheduler).items()).extracting(Scheduler.Item::count).containsExactly(16);

        // A request arrives: the long prefill is capped and the request is admitted in the same step.
        Sequence shortPrompt = seq(1, "f16");
        scheduler.add(shortPrompt);
        assertThat(step(scheduler).items()).extracting(i -> i.seq().id, Scheduler.Item::count, Scheduler.Item::samples)
                .containsExactly(org.assertj.core.groups.Tuple.tuple(longPrompt.id, 4, false),
                        org.assertj.core.groups.Tuple.tuple(shortPrompt.id, 1, true));
        // Nobody waits: the decode first, the prefill takes the rest.
        assertThat(step(scheduler).items()).extracting(i -> i.seq().id, Scheduler.Item::count)
                .containsExactly(org.assertj.core.groups.Tuple.tuple(shortPrompt.id, 1),
                        org.assertj.core.groups.Tuple.tuple(longPrompt.id, 15));
        scheduler.finish(shortPrompt);

        // Two long prompts waiting behind each other: the first admitted leaves room for the second.
        Sequence second = seq(40, "f16");
        Sequence third = seq(40, "f16");
        scheduler.add(second);
        scheduler.add(third);
        assertThat(step(scheduler).items()).extracting(i -> i.seq().id, Scheduler.Item::count)
                .containsExactly(org.assertj.core.groups.Tuple.tuple(longPrompt.id, 4),
                        org.assertj.core.groups.Tuple.tuple(second.id, 4),
                        org.assertj.core.groups.Tuple.tuple(third.id, 8));
    }

    @Test
    void aSequenceWhosePolicyCannotOpenFailsAloneAndTheQueueMovesOn() {
        var pool = pool(1 << 20).unopenable("q4");
        var scheduler = new Scheduler(pool, 8, 64);
        Sequence broken = seq(5, "q4");
        Sequence fine = seq(5, "f16");
        scheduler.add(broken);
        scheduler.add(fine);
        var plan = step(scheduler);
        assertThat(plan.failed()).extracting(Scheduler.Failure::seq).containsExactly(broken);
        assertThat(plan.failed().getFirst().cause()).hasMessage("policy q4 cannot open a cache here");
        assertThat(plan.items()).extracting(Scheduler.Item::seq).containsExactly(fine);
        assertThat(scheduler.waitingCount()).isZero();
        assertThat(scheduler.runningCount()).isEqualTo(1);
    }

    @Test
    void everyStepStaysWithinBudgetAndBatch() {
        var scheduler = new Scheduler(pool(1 << 20), 3, 10);
        for (int i = 0; i < 7; i++) scheduler.add(seq(3 + 5 * i, "q4"));
        for (int s = 0; s < 40; s++) {
            var plan = step(scheduler);
            assertThat(plan.tokens()).isLessThanOrEqualTo(10);
            assertThat(plan.items().size()).isLessThanOrEqualTo(3);
            assertThat(scheduler.runningCount()).isLessThanOrEqualTo(3);
            for (Sequence seq : List.copyOf(scheduler.running())) {
                if (seq.generatedCount() == 3) scheduler.finish(seq);
            }
        }
        assertThat(scheduler.hasWork()).isFalse();
    }

    @Test
    void preemptsTheLatestArrivalWhenBlocksRunOutAndResumesItByRecompute() {
        // 16 blocks of 4 tokens under q4 (16 bytes each): two 8-token prompts, then they grow.
        var pool = pool(256);
        var scheduler = new Scheduler(pool, 8, 64);
        Sequence first = seq(8, "q4");
        Sequence second = seq(8, "q4");
        scheduler.add(first);
        scheduler.add(second);
        step(scheduler);
        assertThat(scheduler.runningCount()).isEqualTo(2);

        Scheduler.Plan plan;
        int steps = 0;
        do {
            plan = step(scheduler);
            steps++;
        } while (plan.preempted().isEmpty() && steps < 100);

        assertThat(plan.preempted()).containsExactly(second);
        assertThat(second.state()).isEqualTo(Sequence.State.WAITING);
        assertThat(second.kv()).isNull();
        assertThat(second.computed()).isZero();
        assertThat(scheduler.waiting()).first().isEqualTo(second);
        assertThat(plan.items()).extracting(Scheduler.Item::seq).containsExactly(first);
        // Only the first sequence's blocks remain.
        assertThat(pool.usedBytes()).isEqualTo(first.kv().bytesHeld());
        int[] secondTokens = second.tokens(0, second.length());
        int generatedBefore = second.generatedCount();
        assertThat(generatedBefore).isPositive();

        scheduler.finish(first);
        assertThat(pool.usedBytes()).isZero();
        var resume = step(scheduler);
        // Readmitted at once, recomputing prompt and generated tokens in one prefill.
        assertThat(resume.items()).extracting(i -> i.seq().id, Scheduler.Item::start, Scheduler.Item::count, Scheduler.Item::samples)
                .containsExactly(org.assertj.core.groups.Tuple.tuple(second.id, 0, secondTokens.length, true));
        assertThat(second.tokens(0, secondTokens.length)).isEqualTo(secondTokens);
        assertThat(second.generatedCount()).isEqualTo(generatedBefore + 1);
        assertThat(second.preemptions()).isEqualTo(1);
    }

    /** As {@link #step}, the "model" storing each fed token in its block (so a cache's history can be checked). */
    private static Scheduler.Plan stepWriting(Scheduler scheduler) {
        Scheduler.Plan plan = scheduler.schedule();
        for (var item : plan.items()) {
            assertThat(item.seq().kv().length()).as("cache length before the step").isEqualTo(item.start());
            ((BlockPool.Cache) item.seq().kv()).write(item.tokens());
        }
        scheduler.completed(plan);
        for (var item : plan.items()) {
            if (item.samples()) item.seq().append(7 + item.seq().generatedCount());
        }
        return plan;
    }

    /** Two s4 sequences in 16 blocks grow until the later one is preempted; returns that step's plan. */
    private Scheduler.Plan untilPreempted(Scheduler scheduler, Sequence first, Sequence second) {
        scheduler.add(first);
        scheduler.add(second);
        stepWriting(scheduler);
        Scheduler.Plan plan;
        int steps = 0;
        do {
            plan = stepWriting(scheduler);
        } while (plan.preempted().isEmpty() && ++steps < 100);
        assertThat(plan.preempted()).containsExactly(second);
        return plan;
    }

    @Test
    void swapPreemptionKeepsTheCacheAndResumesWhereItStopped() {
        var pool = pool(256);
        var scheduler = new Scheduler(pool, Preemption.SWAP, 8, 64);
        Sequence first = seq(8, "s4");
        Sequence second = seq(8, "s4");
        untilPreempted(scheduler, first, second);

        assertThat(second.state()).isEqualTo(Sequence.State.WAITING);
        assertThat(second.isSwapped()).isTrue();
        assertThat(second.kv()).as("the cache is kept, below the pool").isNotNull();
        int computed = second.computed();
        assertThat(computed).isEqualTo(second.length() - 1);
        int[] history = ((BlockPool.Cache) second.kv()).history();
        assertThat(history).isEqualTo(second.tokens(0, computed));
        assertThat(pool.swapOuts).isEqualTo(1);
        assertThat(pool.usedBytes()).as("its blocks left the pool").isEqualTo(first.kv().bytesHeld());
        long swapped = pool.swapInBytes(second.kv());
        assertThat(swapped).isEqualTo(pool.bytesFor("s4", computed));

        // Readmission needs room for every swapped block plus the next token's: not while first holds the pool.
        for (int i = 0; i < 3; i++) {
            long free = pool.freeBytes();
            Scheduler.Plan plan = stepWriting(scheduler);
            boolean resumed = plan.items().stream().anyMatch(item -> item.seq() == second);
            assertThat(resumed).as("free %d, swapped %d", free, swapped).isEqualTo(free >= swapped + 16);
            if (resumed) break;
            assertThat(second.isSwapped()).isTrue();
        }
        if (second.isSwapped()) {
            scheduler.finish(first);
            Scheduler.Plan resume = stepWriting(scheduler);
            // Continues with its next token: nothing recomputed.
            assertThat(resume.items()).extracting(i -> i.seq().id, Scheduler.Item::start, Scheduler.Item::count, Scheduler.Item::samples)
                    .containsExactly(org.assertj.core.groups.Tuple.tuple(second.id, computed, 1, true));
        }
        assertThat(pool.swapIns).isEqualTo(1);
        assertThat(second.isSwapped()).isFalse();
        assertThat(second.state()).isEqualTo(Sequence.State.RUNNING);
        assertThat(second.preemptions()).isEqualTo(1);
        int[] after = ((BlockPool.Cache) second.kv()).history();
        assertThat(java.util.Arrays.copyOf(after, computed)).as("the swapped blocks came back unchanged").isEqualTo(history);
        scheduler.finish(second);
        scheduler.finish(first);
        assertThat(pool.usedBytes()).isZero();
        assertThat(pool.open).isEmpty();
    }

    @Test
    void aBlockLostWhileSwappedFallsBackToRecompute() {
        var pool = pool(256);
        var scheduler = new Scheduler(pool, Preemption.SWAP, 8, 64);
        Sequence first = seq(8, "s4");
        Sequence second = seq(8, "s4");
        untilPreempted(scheduler, first, second);
        assertThat(second.isSwapped()).isTrue();
        int length = second.length();

        pool.loseNextSwapIn = true;
        scheduler.finish(first);
        Scheduler.Plan plan = stepWriting(scheduler);
        assertThat(pool.swapIns).isEqualTo(1);
        // Prompt and generated tokens prefilled again in a fresh cache.
        assertThat(plan.items()).extracting(i -> i.seq().id, Scheduler.Item::start, Scheduler.Item::count)
                .containsExactly(org.assertj.core.groups.Tuple.tuple(second.id, 0, length));
        assertThat(second.isSwapped()).isFalse();
        assertThat(((BlockPool.Cache) second.kv()).history()).isEqualTo(second.tokens(0, length));
        scheduler.finish(second);
        assertThat(pool.usedBytes()).isZero();
        assertThat(pool.open).as("the lost cache was closed").isEmpty();
    }

    @Test
    void recomputePreemptionNeverSwapsAndPoliciesWithoutATierAreRecomputedUnderSwap() {
        for (var mode : new Object[][] {{Preemption.RECOMPUTE, "s4"}, {Preemption.SWAP, "q4"}}) {
            var pool = pool(256);
            var scheduler = new Scheduler(pool, (Preemption) mode[0], 8, 64);
            Sequence first = seq(8, (String) mode[1]);
            Sequence second = seq(8, (String) mode[1]);
            untilPreempted(scheduler, first, second);
            assertThat(second.isSwapped()).isFalse();
            assertThat(second.kv()).isNull();
            assertThat(second.computed()).isZero();
            assertThat(pool.swapOuts).isZero();
        }
    }

    @Test
    void doesNotAdmitInAStepThatPreempted() {
        var pool = pool(256);
        var scheduler = new Scheduler(pool, 8, 64);
        scheduler.add(seq(8, "q4"));
        scheduler.add(seq(8, "q4"));
        step(scheduler);
        Scheduler.Plan plan;
        do {
            plan = step(scheduler);
        } while (plan.preempted().isEmpty());
        Sequence late = seq(1, "q4");
        scheduler.add(late);
        assertThat(late.state()).isEqualTo(Sequence.State.WAITING);
        // The preempted one is ahead of the newcomer.
        assertThat(scheduler.waiting()).extracting(s -> s.id).containsExactly(1L, late.id);
    }

    @Test
    void firstComeFirstServedNeverOvertakesTheHeadOfTheQueue() {
        var pool = pool(512);
        var scheduler = new Scheduler(pool, 8, 1024);
        Sequence big = seq(12, "f16");     // 4 blocks (prompt + 1) = 256 bytes
        Sequence huge = seq(20, "f16");    // 6 blocks = 384 bytes: does not fit next to big
        Sequence small = seq(2, "f16");    // 1 block would fit, but must not overtake huge
        scheduler.add(big);
        scheduler.add(huge);
        scheduler.add(small);
        step(scheduler);
        assertThat(scheduler.running()).containsExactly(big);
        assertThat(scheduler.waiting()).containsExactly(huge, small);

        scheduler.finish(big);
        var plan = step(scheduler);
        assertThat(plan.items()).extracting(Scheduler.Item::seq).containsExactly(huge, small);
        assertThat(scheduler.waitingCount()).isZero();
    }

    @Test
    void runningSequencesArePlannedBeforeNewAdmissions() {
        var scheduler = new Scheduler(pool(1 << 20), 4, 6);
        Sequence a = seq(6, "f16");
        scheduler.add(a);
        step(scheduler);
        Sequence b = seq(10, "f16");
        scheduler.add(b);
        var plan = step(scheduler);
        assertThat(plan.items()).extracting(i -> i.seq().id, Scheduler.Item::count)
                .containsExactly(org.assertj.core.groups.Tuple.tuple(a.id, 1), org.assertj.core.groups.Tuple.tuple(b.id, 5));
    }

    @Test
    void finishingFreesBlocksAtOnceWhereverTheSequenceIs() {
        var pool = pool(4096);
        var scheduler = new Scheduler(pool, 2, 64);
        Sequence a = seq(9, "f16");
        Sequence b = seq(9, "f16");
        Sequence c = seq(9, "f16");
        scheduler.add(a);
        scheduler.add(b);
        scheduler.add(c);
        step(scheduler);
        step(scheduler);
        assertThat(scheduler.running()).containsExactly(a, b);
        long held = pool.usedBytes();
        assertThat(held).isEqualTo(a.kv().bytesHeld() + b.kv().bytesHeld());

        scheduler.finish(a);
        assertThat(pool.usedBytes()).isEqualTo(held - pool.bytesFor("f16", 11));
        scheduler.finish(c);   // still waiting: just leaves the queue
        assertThat(scheduler.waitingCount()).isZero();
        scheduler.finish(b);
        assertThat(pool.usedBytes()).isZero();
        assertThat(pool.blocksUsed()).isZero();
        assertThat(List.of(a, b, c)).allMatch(Sequence::isFinished);
        assertThat(scheduler.hasWork()).isFalse();
    }

    @Test
    void identicalPromptPrefixesShareBlocks() {
        var pool = pool(1 << 20);
        var scheduler = new Scheduler(pool, 8, 64);
        int[] system = IntStream.range(0, 13).map(i -> 500 + i).toArray();
        int[] promptA = concat(system, 1, 2, 3);
        int[] promptB = concat(system, 9, 9);
        Sequence a = seq(promptA, "f16");
        scheduler.add(a);
        step(scheduler);

        Sequence b = seq(promptB, "f16");
        scheduler.add(b);
        var plan = step(scheduler);
        // 13 shared tokens round down to 3 whole blocks = 12 positions, so b prefills 3 tokens.
        assertThat(plan.items()).extracting(i -> i.seq().id, Scheduler.Item::start, Scheduler.Item::count)
                .contains(org.assertj.core.groups.Tuple.tuple(b.id, 12, 3));
        assertThat(b.kv().bytesHeld()).isEqualTo(pool.bytesFor("f16", 16));
        assertThat(pool.usedBytes()).as("only b's last block is its own")
                .isEqualTo(a.kv().bytesHeld() + pool.bytesFor("f16", 1));
        // A different policy shares nothing.
        Sequence c = seq(promptA, "q4");
        scheduler.add(c);
        var plan2 = step(scheduler);
        assertThat(plan2.items()).extracting(i -> i.seq().id, Scheduler.Item::start).contains(org.assertj.core.groups.Tuple.tuple(c.id, 0));

        // Closing the donor keeps the shared blocks alive for b.
        scheduler.finish(a);
        assertThat(pool.usedBytes()).isEqualTo(b.kv().bytesHeld() + c.kv().bytesHeld());
        scheduler.finish(b);
        scheduler.finish(c);
        assertThat(pool.usedBytes()).isZero();
    }

    @Test
    void anIdenticalPromptWaitsOneStepToForkInsteadOfPrefillingTwice() {
        var pool = pool(1 << 20);
        var scheduler = new Scheduler(pool, 8, 64);
        int[] prompt = IntStream.range(0, 40).map(i -> 700 + i).toArray();
        Sequence a = seq(prompt, "f16");
        Sequence b = seq(prompt, "f16");
        scheduler.add(a);
        scheduler.add(b);
        var first = step(scheduler);
        assertThat(first.items()).extracting(Scheduler.Item::seq).containsExactly(a);
        assertThat(scheduler.waiting()).containsExactly(b);
        var second = step(scheduler);
        // 39 tokens can be shared (b must compute its last one); the pool shares whole blocks: 36.
        assertThat(second.items()).extracting(i -> i.seq().id, Scheduler.Item::start, Scheduler.Item::count)
                .containsExactly(org.assertj.core.groups.Tuple.tuple(a.id, 40, 1), org.assertj.core.groups.Tuple.tuple(b.id, 36, 4));
        assertThat(pool.usedBytes()).isEqualTo(pool.bytesFor("f16", 44) + pool.bytesFor("f16", 4));
    }

    @Test
    void aSequenceThatCannotGrowEvenAloneIsExhausted() {
        var pool = pool(64);   // 4 q4 blocks = 16 tokens
        var scheduler = new Scheduler(pool, 4, 64);
        Sequence only = seq(10, "q4");
        scheduler.add(only);
        List<Scheduler.Plan> plans = new ArrayList<>();
        for (int i = 0; i < 20 && plans.stream().allMatch(p -> p.exhausted().isEmpty()); i++) plans.add(step(scheduler));
        var last = plans.getLast();
        assertThat(last.exhausted()).containsExactly(only);
        assertThat(only.computed()).isEqualTo(16);
        scheduler.finish(only);
        assertThat(pool.usedBytes()).isZero();
    }

    @Test
    void rejectsABudgetSmallerThanTheBatch() {
        assertThatThrownBy(() -> new Scheduler(pool(100), 16, 8))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("maxBatch (16)");
    }

    private static int[] concat(int[] head, int... tail) {
        int[] out = java.util.Arrays.copyOf(head, head.length + tail.length);
        System.arraycopy(tail, 0, out, head.length, tail.length);
        return out;
    }
}
