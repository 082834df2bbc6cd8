package dev.kvserve.attention;

import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.kvcache.evict.KeyWindow;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * Drives {@link PagedAttention} the way the decoder does (attend every layer, then advance) with
 * random queries, keys and values, and keeps each sequence's full history so that every output can
 * be compared with {@link ReferenceAttention}.
 */
final class Harness implements AutoCloseable {

    final KvGeometry g;
    final KvCacheManager manager;
    final PagedAttention attention;
    final Random rnd;
    final Arena arena = Arena.ofConfined();

    /** A sequence with its history per layer: [tokens][kvDim] pre-RoPE keys and values. */
    final class Seq {
        final PagedSequence cache;
        final float[][] keys;
        final float[][] values;

        Seq(PagedSequence cache) {
            this.cache = cache;
            this.keys = new float[g.layers()][0];
            this.values = new float[g.layers()][0];
        }

        Seq(PagedSequence cache, Seq src) {
            this.cache = cache;
            this.keys = new float[g.layers()][];
            this.values = new float[g.layers()][];
            for (int l = 0; l < g.layers(); l++) {
                keys[l] = src.keys[l].clone();
                values[l] = src.values[l].clone();
            }
        }
    }

    /** Outputs of one step: per layer [rows][heads*headDim] from the cache and from the reference. */
    record StepResult(float[][] paged, float[][] reference, int[] firstRow, int[] starts, float[][] q) {}

    Harness(KvGeometry g, long budget, int blockTokens, int threads, long seed) {
        this.g = g;
        this.manager = new KvCacheManager(g, budget, blockTokens);
        this.attention = new PagedAttention(g, manager.rope(), threads);
        this.rnd = new Random(seed);
    }

    Seq open(String spec) {
        return new Seq(manager.open(spec));
    }

    Seq fork(Seq src) {
        return new Seq(manager.fork(src.cache), src);
    }

    /** One decoder step: {@code tokens[i]} new tokens for {@code seqs[i]}, all layers, then advance. */
    StepResult step(List<Seq> seqs, int[] tokens, boolean[] endsPrompt, ReferenceAttention.Visibility visibility) {
        return stepPerLayer(seqs, tokens, endsPrompt, layer -> visibility);
    }

    /** As above with a reference visibility per layer (looked up right after that layer's attend). */
    StepResult stepPerLayer(List<Seq> seqs, int[] tokens, boolean[] endsPrompt,
                            java.util.function.IntFunction<ReferenceAttention.Visibility> visibilityOfLayer) {
        int heads = g.heads(), d = g.headDim(), kvDim = g.kvDim();
        int rows = Arrays.stream(tokens).sum();
        MemorySegment q = arena.allocate((long) rows * heads * d * 4);
        MemorySegment k = arena.allocate((long) rows * kvDim * 4);
        MemorySegment v = arena.allocate((long) rows * kvDim * 4);
        MemorySegment out = arena.allocate((long) rows * heads * d * 4);
        List<StepBatch.Entry> entries = new ArrayList<>();
        int[] firstRow = new int[seqs.size()];
        int[] starts = new int[seqs.size()];
        int row = 0;
        for (int i = 0; i < seqs.size(); i++) {
            firstRow[i] = row;
            starts[i] = seqs.get(i).cache.length();
            entries.add(new StepBatch.Entry(seqs.get(i).cache, row, tokens[i], starts[i], endsPrompt != null && endsPrompt[i]));
            row += tokens[i];
        }
        StepBatch batch = new StepBatch(entries);
        float[][] paged = new float[g.layers()][];
        float[][] ref = new float[g.layers()][];
        float[][] qs = new float[g.layers()][];
        for (int l = 0; l < g.layers(); l++) {
            float[] qa = gaussian(rows * heads * d);
            float[] ka = gaussian(rows * kvDim);
            float[] va = gaussian(rows * kvDim);
            // queries arrive rotated at their positions, keys before RoPE
            for (int i = 0; i < seqs.size(); i++) {
                for (int r = 0; r < tokens[i]; r++) {
                    for (int h = 0; h < heads; h++) manager.rope().rotate(qa, ((firstRow[i] + r) * heads + h) * d, starts[i] + r);
                }
            }
            MemorySegment.copy(qa, 0, q, ValueLayout.JAVA_FLOAT, 0, qa.length);
            MemorySegment.copy(ka, 0, k, ValueLayout.JAVA_FLOAT, 0, ka.length);
            MemorySegment.copy(va, 0, v, ValueLayout.JAVA_FLOAT, 0, va.length);
            attention.attend(l, batch, q, k, v, out);
            paged[l] = new float[rows * heads * d];
            MemorySegment.copy(out, ValueLayout.JAVA_FLOAT, 0, paged[l], 0, paged[l].length);
            ref[l] = new float[rows * heads * d];
            qs[l] = qa;
            for (int i = 0; i < seqs.size(); i++) {
                Seq s = seqs.get(i);
                int n = tokens[i];
                s.keys[l] = Arrays.copyOf(s.keys[l], (starts[i] + n) * kvDim);
                s.values[l] = Arrays.copyOf(s.values[l], (starts[i] + n) * kvDim);
                System.arraycopy(ka, firstRow[i] * kvDim, s.keys[l], starts[i] * kvDim, n * kvDim);
                System.arraycopy(va, firstRow[i] * kvDim, s.values[l], starts[i] * kvDim, n * kvDim);
                float[] qi = Arrays.copyOfRange(qa, firstRow[i] * heads * d, (firstRow[i] + n) * heads * d);
                KeyWindow window = s.cache.keyWindow();
                float[] r = ReferenceAttention.attend(g, manager.rope(), s.keys[l], s.values[l], qi, starts[i], n, window,
                        visibilityOfLayer.apply(l));
                System.arraycopy(r, 0, ref[l], firstRow[i] * heads * d, r.length);
            }
        }
        for (int i = 0; i < seqs.size(); i++) seqs.get(i).cache.advance(tokens[i]);
        return new StepResult(paged, ref, firstRow, starts, qs);
    }

    StepResult step(Seq s, int tokens) {
        return step(List.of(s), new int[] {tokens}, null, null);
    }

    /** One step of one sequence through every layer without keeping history or computing the reference. */
    void stepTimedOnly(Seq s, int n) {
        int heads = g.heads(), d = g.headDim(), kvDim = g.kvDim();
        MemorySegment q = arena.allocate((long) n * heads * d * 4);
        MemorySegment k = arena.allocate((long) n * kvDim * 4);
        MemorySegment v = arena.allocate((long) n * kvDim * 4);
        MemorySegment out = arena.allocate((long) n * heads * d * 4);
        MemorySegment.copy(gaussian(n * heads * d), 0, q, ValueLayout.JAVA_FLOAT, 0, n * heads * d);
        MemorySegment.copy(gaussian(n * kvDim), 0, k, ValueLayout.JAVA_FLOAT, 0, n * kvDim);
        MemorySegment.copy(gaussian(n * kvDim), 0, v, ValueLayout.JAVA_FLOAT, 0, n * kvDim);
        StepBatch batch = new StepBatch(List.of(new StepBatch.Entry(s.cache, 0, n, s.cache.length())));
        for (int l = 0; l < g.layers(); l++) attention.attend(l, batch, q, k, v, out);
        s.cache.advance(n);
    }

    float[] gaussian(int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) rnd.nextGaussian();
        return x;
    }

    static double maxAbsDiff(float[] a, float[] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
        return m;
    }

    /** ||a - b|| / ||b||. */
    static double relativeError(float[] a, float[] b) {
        double num = 0, den = 0;
        for (int i = 0; i < a.length; i++) {
            num += (double) (a[i] - b[i]) * (a[i] - b[i]);
            den += (double) b[i] * b[i];
        }
        return Math.sqrt(num / Math.max(den, 1e-30));
    }

    @Override
    public void close() {
        attention.close();
        manager.close();
        arena.close();
    }
}
