package dev.kvserve.scheduler;

import dev.kvserve.kernels.RopeConfig;
import dev.kvserve.kvcache.KvGeometry;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A synthetic model for engine tests: it stores each step's tokens in the sequence's blocks (as a
 * real model stores K/V) and derives the next-token logits from a hash of everything in the cache,
 * so a wrong cache (a bad fork, a botched recompute, a mixed-up batch) changes the output. Text is
 * drawn from a small alphabet and some histories end in EOS.
 */
final class HashModel implements StepModel {

    static final String ALPHABET = "abcdefghijklmnopqrstuvwxyz ,.";

    private final int context;
    final AtomicInteger steps = new AtomicInteger();
    final AtomicInteger maxBatchSeen = new AtomicInteger();
    volatile boolean closed;
    /** When set, the next forward counts {@code entered} down and waits for {@code release}. */
    private volatile CountDownLatch entered;
    private volatile CountDownLatch release;
    /** When set, the next forward throws it, as a failing backend would. */
    volatile RuntimeException failNext;

    HashModel(int context) {
        this.context = context;
    }

    /** Makes the next step block until {@code release} opens, signalling {@code entered} first. */
    void gate(CountDownLatch entered, CountDownLatch release) {
        this.release = release;
        this.entered = entered;
    }

    @Override public int contextLength() { return context; }

    @Override public int vocabSize() { return TinyTokenizer.VOCAB; }

    @Override public KvGeometry kvGeometry() {
        return new KvGeometry(2, 4, 2, 8, context, new RopeConfig(8, 10000f, 1f, false));
    }

    @Override
    public float[][] forward(List<Chunk> chunks) {
        if (closed) throw new IllegalStateException("model used after close");
        CountDownLatch in = entered;
        if (in != null) {
            entered = null;
            in.countDown();
            try {
                release.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            }
        }
        steps.incrementAndGet();
        RuntimeException failure = failNext;
        if (failure != null) {
            failNext = null;
            throw failure;
        }
        maxBatchSeen.accumulateAndGet(chunks.size(), Math::max);
        float[][] logits = new float[chunks.size()][];
        for (int i = 0; i < chunks.size(); i++) {
            var cache = (BlockPool.Cache) chunks.get(i).cache();
            if (cache.length() + chunks.get(i).tokens().length > context) {
                throw new IllegalStateException("position past the context: " + (cache.length() + chunks.get(i).tokens().length));
            }
            cache.write(chunks.get(i).tokens());
            logits[i] = logitsFor(cache.history());
        }
        return logits;
    }

    static float[] logitsFor(int[] history) {
        long h = 0xcbf29ce484222325L;
        for (int token : history) h = (h ^ token) * 0x100000001b3L;
        h ^= h >>> 29;
        float[] logits = new float[TinyTokenizer.VOCAB];
        Arrays.fill(logits, -30f);
        for (int j = 0; j < ALPHABET.length(); j++) {
            logits[TinyTokenizer.tokenOf(ALPHABET.charAt(j))] = (float) (3 * Math.sin((h & 0xFFFF) * 0.001 + j * 0.7));
        }
        long pick = Math.floorMod(h, 997);
        int target = pick % 61 == 0 ? TinyTokenizer.EOS : TinyTokenizer.tokenOf(ALPHABET.charAt((int) (pick % ALPHABET.length())));
        logits[target] = 6f;
        return logits;
    }

    @Override public void close() { closed = true; }
}
