package dev.kvserve.scheduler;

import dev.kvserve.kvcache.BlockLostException;
import dev.kvserve.kvcache.SequenceKv;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Decides what one model step computes, the way vLLM's iteration-level scheduler does: the decode
 * token of every running sequence first, then the next prefill chunks of partially prefilled
 * sequences, then new admissions from the waiting queue, all within a per-step token budget and a
 * maximum batch of sequences holding a cache.
 *
 * <p>Priority is first come, first served: the running list is kept in arrival order and when the
 * pool cannot make room for a sequence's next tokens, the latest arrivals are preempted and requeued
 * at the front of the waiting queue. With {@link Preemption#SWAP} a sequence whose policy has an
 * offload tier has its blocks moved to host RAM / SSD and swapped back in on readmission (which
 * needs the pool to have room for them); otherwise its blocks are freed and it is recomputed from
 * scratch on readmission. A
 * waiting request is admitted only while the pool's free bytes, less what partially prefilled
 * sequences still need for their prompts, cover its whole prompt under its own policy: the pool
 * counts compressed bytes, so a compressed policy admits more sequences. Nothing is admitted in a
 * step that had to preempt, and the waiting queue is never overtaken: if its head does not fit,
 * nothing behind it is admitted either.
 *
 * <p>No request waits behind a long prompt: while anyone else wants budget (a request is waiting, or
 * a later sequence is prefilling too), one sequence's prefill chunk is capped at a fraction of the
 * step budget (vLLM's {@code long_prefill_token_threshold}), so every step leaves room to admit the
 * head of the queue; alone, a prompt takes the whole budget. Decodes come first in any case, so a
 * running sequence gets its token every step. Chunk sizes never change results: a chunk's tokens
 * attend exactly as they would in any other chunking.
 *
 * <p>A sequence whose own policy fails it while it is scheduled (a policy part that cannot be bound
 * to this model when its cache opens, a pool call that throws for its cache) is taken out and
 * reported in {@link Plan#failed}; the rest of the plan is unaffected.
 *
 * <p>Identical prompt prefixes are shared: a new sequence whose prompt starts with tokens another
 * cached sequence of the same policy has already computed forks that sequence's blocks
 * (copy-on-write, where the pool supports it) and prefills only the rest.
 *
 * <p>Not thread-safe: the engine thread owns it.
 */
final class Scheduler {

    /** {@code count} tokens of {@code seq} from position {@code start}; {@code samples}: its last token's logits pick the next token. */
    record Item(Sequence seq, int start, int count, boolean samples) {
        int[] tokens() {
            return seq.tokens(start, start + count);
        }
    }

    /**
     * One step's decisions.
     *
     * @param items     what to feed the model, one chunk per sequence
     * @param preempted sequences sent back to the waiting queue in this step
     * @param exhausted sequences that cannot continue even alone in the pool: the engine must end them
     * @param failed    sequences taken out because scheduling them threw: the engine must fail them
     */
    record Plan(List<Item> items, List<Sequence> preempted, List<Sequence> exhausted, List<Failure> failed) {
        boolean isEmpty() {
            return items.isEmpty();
        }

        int tokens() {
            int n = 0;
            for (Item item : items) n += item.count();
            return n;
        }
    }

    /** {@code seq} could not be scheduled: {@code cause} came from its own cache or policy. */
    record Failure(Sequence seq, RuntimeException cause) {}

    /**
     * A waiting request whose prompt shares at least this many more tokens with a sequence that is
     * still prefilling them waits for that prefill to fork it (one KV block of the paged pool).
     */
    static final int SHARE_WAIT_TOKENS = 16;

    private final KvSpace pool;
    private final Preemption preemption;
    private final int maxBatch;
    private final int stepTokens;
    /** Most tokens of one sequence's prefill chunk while others want budget. */
    private final int prefillChunk;
    private final ArrayDeque<Sequence> waiting = new ArrayDeque<>();
    /** Sequences holding a cache, oldest arrival first. */
    private final List<Sequence> running = new ArrayList<>();

    Scheduler(KvSpace pool, int maxBatch, int stepTokens) {
        this(pool, Preemption.RECOMPUTE, maxBatch, stepTokens);
    }

    Scheduler(KvSpace pool, Preemption preemption, int maxBatch, int stepTokens) {
        this(pool, preemption, maxBatch, stepTokens, stepTokens);
    }

    /**
     * @param prefillChunk most prompt tokens one sequence prefills in a step while other sequences
     *                     want budget; {@code stepTokens} turns the cap off
     */
    Scheduler(KvSpace pool, Preemption preemption, int maxBatch, int stepTokens, int prefillChunk) {
        if (prefillChunk < 1) throw new IllegalArgumentException("the prefill chunk cap must be >= 1, got " + prefillChunk);
        if (maxBatch < 1) throw new IllegalArgumentException("maxBatch must be >= 1, got " + maxBatch);
        if (stepTokens < maxBatch) {
            throw new IllegalArgumentException("the per-step token budget (" + stepTokens
                    + ") must be at least maxBatch (" + maxBatch + ") so every running sequence can decode each step");
        }
        this.pool = pool;
        this.preemption = preemption;
        this.maxBatch = maxBatch;
        this.stepTokens = stepTokens;
        this.prefillChunk = prefillChunk;
    }

    /** Default prefill chunk cap for a step budget: a quarter of it, so four long prompts fill a step. */
    static int defaultPrefillChunk(int stepTokens) {
        return Math.max(1, stepTokens / 4);
    }

    /** Queues a new request behind everything waiting. */
    void add(Sequence seq) {
        if (seq.state() != Sequence.State.WAITING) throw new IllegalArgumentException(seq + " is not waiting");
        waiting.addLast(seq);
    }

    int waitingCount() { return waiting.size(); }

    int runningCount() { return running.size(); }

    boolean hasWork() { return !waiting.isEmpty() || !running.isEmpty(); }

    List<Sequence> running() { return Collections.unmodifiableList(running); }

    List<Sequence> waiting() { return List.copyOf(waiting); }

    /** Ends a sequence wherever it is and frees its blocks now. */
    void finish(Sequence seq) {
        if (!running.remove(seq)) waiting.remove(seq);
        seq.finish();
    }

    /**
     * Sends running sequences back to the waiting queue (blocks freed, recomputed later), in
     * arrival order at its front: for a step that ran out of KV space or lost a block half-way (its
     * caches are half written, so they are never swapped).
     */
    void preempt(List<Sequence> sequences) {
        var latestFirst = new ArrayList<>(sequences);
        latestFirst.sort((a, b) -> Long.compare(b.arrival, a.arrival));
        for (Sequence seq : latestFirst) {
            if (!running.remove(seq)) continue;
            seq.preempt();
            waiting.addFirst(seq);
        }
    }

    /** Records that the model computed the plan's tokens. */
    void completed(Plan plan) {
        for (Item item : plan.items()) completed(item);
    }

    /** Records that the model computed one item's tokens. */
    void completed(Item item) {
        item.seq().computed(item.count());
    }

    Plan schedule() {
        pool.settle();
        var items = new ArrayList<Item>();
        var preempted = new ArrayList<Sequence>();
        var exhausted = new ArrayList<Sequence>();
        var failed = new ArrayList<Failure>();

        // Decodes first: a running sequence's next token costs one slot of the budget. Then the
        // next chunk of each sequence still prefilling, oldest first.
        for (Sequence.State phase : new Sequence.State[] {Sequence.State.RUNNING, Sequence.State.PREFILLING}) {
            for (int i = 0; i < running.size(); i++) {
                Sequence seq = running.get(i);
                int budget = stepTokens - tokensOf(items);
                if (budget == 0) break;
                if (seq.state() != phase) continue;
                int chunk = Math.min(seq.pending(), budget);
                if (phase == Sequence.State.PREFILLING && (canAdmit(0) || prefillingAfter(i))) {
                    chunk = Math.min(chunk, prefillChunk);
                }
                boolean room;
                try {
                    room = makeRoom(seq, chunk, items, preempted);
                    // Nobody later is left to preempt: a smaller prefill chunk may still fit.
                    while (!room && chunk > 1) {
                        chunk = (chunk + 1) / 2;
                        room = pool.reserveSpilling(seq.kv(), chunk);
                    }
                } catch (RuntimeException cannot) {
                    // its cache (e.g. its offload tier spilling) failed it; makeRoom only ever took later sequences
                    running.remove(i--);
                    failed.add(new Failure(seq, cannot));
                    continue;
                }
                if (room) {
                    items.add(new Item(seq, seq.computed(), chunk, chunk == seq.pending()));
                } else if (i == 0) {
                    // Alone in the pool and still no room: only the engine can end it.
                    running.remove(i--);
                    exhausted.add(seq);
                } else {
                    preemptAt(i--, preempted);
                }
            }
        }

        // Admissions, in strict arrival order, and not in a step that had to take blocks back.
        while (preempted.isEmpty() && exhausted.isEmpty() && running.size() < maxBatch && !waiting.isEmpty()) {
            int budget = stepTokens - tokensOf(items);
            if (budget == 0) break;
            Sequence head = waiting.peekFirst();
            boolean admitted;
            try {
                admitted = admit(head, budget, items);
            } catch (RuntimeException cannot) {
                // its policy cannot open or swap in its cache: it fails, the queue moves on
                waiting.pollFirst();
                failed.add(new Failure(head, cannot));
                continue;
            }
            if (!admitted) break;
            waiting.pollFirst();
        }
        return new Plan(List.copyOf(items), List.copyOf(preempted), List.copyOf(exhausted), List.copyOf(failed));
    }

    /** Whether a sequence after {@code index} in the running list is prefilling too (and wants budget). */
    private boolean prefillingAfter(int index) {
        for (int j = index + 1; j < running.size(); j++) {
            if (running.get(j).state() == Sequence.State.PREFILLING) return true;
        }
        return false;
    }

    /** Whether a waiting request other than the first {@code ahead} could still join the batch. */
    private boolean canAdmit(int ahead) {
        return waiting.size() > ahead && running.size() + ahead < maxBatch;
    }

    /** A prefill chunk of the head of the queue being admitted: capped when a request behind it could be admitted too. */
    private int admissionChunk(int pending, int budget) {
        int chunk = Math.min(pending, budget);
        return canAdmit(1) ? Math.min(chunk, prefillChunk) : chunk;
    }

    private boolean admit(Sequence seq, int budget, List<Item> items) {
        if (seq.isSwapped()) {
            Boolean resumed = resume(seq, budget, items);
            if (resumed != null) return resumed;
            // a block of its swapped cache was lost: admitted below as a new sequence, recomputed
        }
        Sequence donor = null;
        int shared = 0;
        int coming = 0;
        if (pool.canFork(seq.policy)) {
            for (Sequence other : running) {
                if (!other.policy.equals(seq.policy)) continue;
                int common = commonPrefix(other, seq, other.computed());
                if (common > shared) {
                    shared = common;
                    donor = other;
                }
                coming = Math.max(coming, commonPrefix(other, seq, other.length()));
            }
        }
        // A sequence still prefilling the same prompt (n completions of one prompt, a shared system
        // prompt) will soon hold a longer prefix: wait for it rather than compute it twice.
        if (coming - shared >= SHARE_WAIT_TOKENS) return false;
        SequenceKv cache = null;
        int chunk;
        try {
            if (donor != null) {
                cache = pool.fork(donor.kv(), shared);
                shared = cache == null ? 0 : cache.length();
            }
            chunk = admissionChunk(seq.length() - shared, budget);
            // Alone, a sequence of an offload policy may hold more than the pool (it spills); beside
            // others it is admitted only when it fits whole, as running sequences stay resident.
            boolean alone = running.isEmpty() && items.isEmpty();
            long need = (alone ? pool.admissionBytes(seq.policy, seq.length() + 1, chunk) : pool.bytesFor(seq.policy, seq.length() + 1))
                    - (shared > 0 ? pool.bytesFor(seq.policy, shared) : 0);
            if (pool.freeBytes() - owedToPrefills(items) < need) {
                if (cache != null) cache.close();
                return false;
            }
            if (cache == null) cache = pool.open(seq.policy);
            if (!(alone ? pool.reserveSpilling(cache, chunk) : pool.reserve(cache, chunk))) {
                cache.close();
                return false;
            }
        } catch (RuntimeException cannot) {
            // the sequence does not own the cache yet: nobody else would free it
            if (cache != null) cache.close();
            throw cannot;
        }
        seq.admit(cache, shared);
        insertByArrival(seq);
        items.add(new Item(seq, shared, chunk, chunk == seq.pending()));
        return true;
    }

    /**
     * Readmits a swapped-out sequence where it stopped: all its blocks come back at once when the pool
     * has room for them and its next chunk. When it alone cannot get them back (nothing else runs,
     * nothing else is planned) it resumes anyway and its offload tier brings blocks up as the layers
     * read them. Null when a block was lost and the sequence must be recomputed instead.
     */
    private Boolean resume(Sequence seq, int budget, List<Item> items) {
        int chunk = admissionChunk(seq.pending(), budget);
        long need = pool.swapInBytes(seq.kv()) + pool.bytesFor(seq.policy, seq.length() + 1) - pool.bytesFor(seq.policy, seq.computed());
        boolean alone = running.isEmpty() && items.isEmpty();
        boolean eager = pool.freeBytes() - owedToPrefills(items) >= need;
        if (!eager && !alone) return false;
        if (eager) {
            try {
                pool.swapIn(seq.kv());
            } catch (BlockLostException lost) {
                seq.dropSwapped();
                return null;
            }
        }
        if (!(alone ? pool.reserveSpilling(seq.kv(), chunk) : pool.reserve(seq.kv(), chunk))) {
            // back down: unchanged blocks keep their lower copies, so this moves no bytes
            if (!pool.swapOut(seq.kv())) {
                seq.dropSwapped();
                return null;
            }
            return false;
        }
        seq.resume();
        insertByArrival(seq);
        items.add(new Item(seq, seq.computed(), chunk, chunk == seq.pending()));
        return true;
    }

    /**
     * Common prefix of {@code donor}'s first {@code upTo} tokens and {@code seq}'s tokens, leaving at
     * least one token of {@code seq} to compute (its logits are needed).
     */
    private static int commonPrefix(Sequence donor, Sequence seq, int upTo) {
        int limit = Math.min(upTo, seq.length() - 1);
        int n = 0;
        while (n < limit && donor.token(n) == seq.token(n)) n++;
        return n;
    }

    /** Bytes prefilling sequences will still need for the prompt part this step does not cover. */
    private long owedToPrefills(List<Item> items) {
        long owed = 0;
        for (Sequence seq : running) {
            if (seq.state() != Sequence.State.PREFILLING) continue;
            int covered = seq.computed();
            for (Item item : items) if (item.seq() == seq) covered += item.count();
            owed += Math.max(0, pool.bytesFor(seq.policy, seq.length() + 1) - pool.bytesFor(seq.policy, covered));
        }
        return owed;
    }

    /**
     * Reserves the next {@code tokens} positions of {@code seq}, preempting later arrivals (from the
     * latest) until the pool has room. False when no later arrival is left to preempt.
     */
    private boolean makeRoom(Sequence seq, int tokens, List<Item> items, List<Sequence> preempted) {
        while (!pool.reserve(seq.kv(), tokens)) {
            int last = running.size() - 1;
            // the latest arrival itself: with an offload policy its cold blocks may still go down
            if (running.get(last) == seq) return pool.reserveSpilling(seq.kv(), tokens);
            Sequence victim = running.get(last);
            items.removeIf(item -> item.seq() == victim);
            preemptAt(last, preempted);
        }
        return true;
    }

    private void preemptAt(int index, List<Sequence> preempted) {
        Sequence victim = running.remove(index);
        if (preemption == Preemption.SWAP && pool.canSwap(victim.policy) && swapOut(victim)) {
            victim.swappedOut();
        } else {
            victim.preempt();
        }
        waiting.addFirst(victim);
        preempted.add(victim);
    }

    /** Moves a victim's blocks down; a tier that throws doing so only costs it a recompute. */
    private boolean swapOut(Sequence victim) {
        try {
            return pool.swapOut(victim.kv());
        } catch (RuntimeException cannot) {
            return false;
        }
    }

    private void insertByArrival(Sequence seq) {
        int at = running.size();
        while (at > 0 && running.get(at - 1).arrival > seq.arrival) at--;
        running.add(at, seq);
    }

    private static int tokensOf(List<Item> items) {
        int n = 0;
        for (Item item : items) n += item.count();
        return n;
    }
}
