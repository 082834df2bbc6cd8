package dev.kvserve.runtime.sampling;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Picks one sequence's next token from logits. The steps follow llama.cpp's default sampler chain:
 * <ol>
 * <li>penalties over the last {@code penaltyLastN} history tokens: repetition (divide positive /
 *     multiply negative logits), then presence and frequency (subtract);</li>
 * <li>greedy argmax when temperature is 0 (lowest id on ties);</li>
 * <li>top-k, then top-p on the renormalised top-k set, then min-p (relative to the best token);</li>
 * <li>temperature on what is left, and one draw from the resulting distribution.</li>
 * </ol>
 * Truncation before temperature (llama.cpp's order) keeps the candidate set independent of the
 * temperature. Log-probabilities are reported from the penalised logits at temperature 1 with no
 * truncation: the model's own distribution, as OpenAI's {@code logprobs} describe, but with the
 * penalties the request asked for applied.
 * <p>
 * One instance per sequence: it owns the random stream, so the same seed and the same logits give
 * the same tokens. Not thread-safe.
 */
public final class Sampler {
    private final SamplingParams params;
    private final SplittableRandom random;
    private float[] adjusted = new float[0];
    private int[] occurrences = new int[0];
    private int[] candidates = new int[0];
    private long[] sortKeys = new long[0];
    /** exp(logit - max) by token, for top-p's mass sums. */
    private double[] tokenWeights = new double[0];
    private int[] windowOrder = new int[0];
    private double[] weightBuffer = new double[1];
    private final double[] bucketMass = new double[BUCKETS];

    public Sampler(SamplingParams params) {
        if (params == null) {
            throw new IllegalArgumentException("sampling params are null");
        }
        this.params = params;
        this.random = params.seed() != null ? new SplittableRandom(params.seed()) : new SplittableRandom();
    }

    public SamplingParams params() {
        return params;
    }

    /** The next token. {@code history} is what the penalties look at (e.g. prompt + generated so far). */
    public int sample(float[] logits, IntCollection history) {
        if (params.isGreedy() && !params.hasPenalties()) {
            // Nothing changes the logits: check them and take the argmax in one pass, without a copy.
            return checkedArgmax(logits);
        }
        float[] penalized = prepare(logits, history);
        return choose(penalized);
    }

    /** {@link #prepare}'s checks and {@link #argmax} of the unmodified logits, in one pass. */
    private static int checkedArgmax(float[] logits) {
        if (logits == null || logits.length == 0) {
            throw new IllegalArgumentException("logits are empty");
        }
        int best = 0;
        for (int i = 0; i < logits.length; i++) {
            float logit = logits[i];
            if (Float.isNaN(logit) || logit == Float.POSITIVE_INFINITY) {
                throw new IllegalArgumentException("logit of token " + i + " is " + logit);
            }
            if (logit > logits[best]) {
                best = i;
            }
        }
        if (logits[best] == Float.NEGATIVE_INFINITY) {
            throw new IllegalArgumentException("every logit is -infinity: no token can be sampled");
        }
        return best;
    }

    /** The next token with its log-probability and the {@code topLogprobs} most likely alternatives. */
    public SampledToken sample(float[] logits, IntCollection history, int topLogprobs) {
        if (topLogprobs < 0) {
            throw new IllegalArgumentException("topLogprobs must be >= 0, got " + topLogprobs);
        }
        float[] penalized = prepare(logits, history);
        int token = choose(penalized);
        int n = penalized.length;
        double logNormalizer = logSumExp(penalized, n);
        int[] top = topIndices(penalized, n, Math.min(topLogprobs, n));
        float[] topValues = new float[top.length];
        for (int i = 0; i < top.length; i++) {
            topValues[i] = (float) (penalized[top[i]] - logNormalizer);
        }
        return new SampledToken(token, (float) (penalized[token] - logNormalizer), top, topValues);
    }

    /** The exact distribution the next draw uses (penalties, truncation, temperature); for tests and tools. */
    float[] distribution(float[] logits, IntCollection history) {
        float[] penalized = prepare(logits, history);
        float[] probabilities = new float[penalized.length];
        if (params.isGreedy()) {
            probabilities[argmax(penalized, penalized.length)] = 1f;
            return probabilities;
        }
        int kept = truncate(penalized);
        double[] weights = temperatureWeights(penalized, kept);
        double total = weights[kept];
        for (int i = 0; i < kept; i++) {
            probabilities[candidates[i]] = (float) (weights[i] / total);
        }
        return probabilities;
    }

    /** Copies the logits, checks them and applies the penalties. */
    float[] prepare(float[] logits, IntCollection history) {
        if (logits == null || logits.length == 0) {
            throw new IllegalArgumentException("logits are empty");
        }
        int n = logits.length;
        if (adjusted.length != n) {
            // what truncation needs is allocated when it first runs (a greedy request never does)
            adjusted = new float[n];
            occurrences = new int[0];
            candidates = new int[0];
            sortKeys = new long[0];
            tokenWeights = new double[0];
        }
        boolean anyFinite = false;
        for (int i = 0; i < n; i++) {
            float logit = logits[i];
            if (Float.isNaN(logit) || logit == Float.POSITIVE_INFINITY) {
                throw new IllegalArgumentException("logit of token " + i + " is " + logit);
            }
            anyFinite |= logit != Float.NEGATIVE_INFINITY;
            adjusted[i] = logit;
        }
        if (!anyFinite) {
            throw new IllegalArgumentException("every logit is -infinity: no token can be sampled");
        }
        if (history != null && params.hasPenalties()) {
            if (occurrences.length != n) occurrences = new int[n];
            applyPenalties(adjusted, history);
        }
        return adjusted;
    }

    private void applyPenalties(float[] values, IntCollection history) {
        int size = history.size();
        int from = params.penaltyLastN() < 0 ? 0 : Math.max(0, size - params.penaltyLastN());
        int[] seen = new int[Math.min(size - from, values.length)];
        int distinct = 0;
        for (int i = from; i < size; i++) {
            int token = history.get(i);
            if (token < 0 || token >= values.length) {
                throw new IllegalArgumentException("history token " + token + " at " + i
                        + " is outside the vocabulary of " + values.length);
            }
            if (occurrences[token]++ == 0) {
                seen[distinct++] = token;
            }
        }
        float repetition = params.repetitionPenalty();
        for (int i = 0; i < distinct; i++) {
            int token = seen[i];
            int count = occurrences[token];
            occurrences[token] = 0;
            float logit = values[token];
            // Dividing a negative logit would make the token more likely: multiply instead (llama.cpp, CTRL fix).
            logit = logit <= 0 ? logit * repetition : logit / repetition;
            logit -= count * params.frequencyPenalty() + params.presencePenalty();
            values[token] = logit;
        }
    }

    private int choose(float[] values) {
        if (params.isGreedy()) {
            return argmax(values, values.length);
        }
        int kept = truncate(values);
        double[] weights = temperatureWeights(values, kept);
        double target = random.nextDouble() * weights[kept];
        double cumulative = 0;
        for (int i = 0; i < kept; i++) {
            cumulative += weights[i];
            if (target < cumulative) {
                return candidates[i];
            }
        }
        return candidates[kept - 1];
    }

    /** Weights exp((l - max) / T) for candidates[0, kept); the total is at index {@code kept}. */
    private double[] temperatureWeights(float[] values, int kept) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < kept; i++) {
            max = Math.max(max, values[candidates[i]]);
        }
        if (weightBuffer.length < kept + 1) {
            weightBuffer = new double[kept + 1];
        }
        double[] weights = weightBuffer;
        double total = 0;
        double inverseTemperature = 1.0 / params.temperature();
        for (int i = 0; i < kept; i++) {
            weights[i] = Math.exp((values[candidates[i]] - max) * inverseTemperature);
            total += weights[i];
        }
        weights[kept] = total;
        return weights;
    }

    /**
     * Applies top-k, top-p and min-p; leaves the survivors in {@code candidates[0, result)}, best
     * first whenever top-k or top-p needed an order.
     */
    private int truncate(float[] values) {
        int n = values.length;
        if (candidates.length != n) {
            candidates = new int[n];
            sortKeys = new long[n];
            tokenWeights = new double[n];
        }
        int count = 0;
        for (int i = 0; i < n; i++) {
            if (values[i] != Float.NEGATIVE_INFINITY) {
                candidates[count++] = i;
            }
        }
        if (params.topK() > 0 && params.topK() < count) {
            count = bestKeys(values, n, params.topK(), sortKeys);
            for (int i = 0; i < count; i++) {
                candidates[i] = (int) sortKeys[i];
            }
        }
        float max = values[candidates[0]];
        for (int i = 1; i < count; i++) {
            max = Math.max(max, values[candidates[i]]);
        }
        double minPLogit = params.minP() > 0 ? max + Math.log(params.minP()) : Double.NEGATIVE_INFINITY;
        if (params.topP() < 1f) {
            count = topP(values, count, max, minPLogit);
        }
        if (params.minP() > 0) {
            int kept = 0;
            for (int i = 0; i < count; i++) {
                if (values[candidates[i]] >= minPLogit) {
                    candidates[kept++] = candidates[i];
                }
            }
            count = Math.max(kept, 1);
        }
        return count;
    }

    /**
     * Keeps the shortest best-first prefix of candidates[0, count) whose probability (normalised over
     * all of them) reaches topP, as the sampler always has: a logit window below the best is widened
     * (width 8, 16, ...) until its mass, summed in candidate order, reaches topP or until min-p would
     * drop the rest anyway, and the window's tokens sorted best first are scanned for the cut; when
     * the scan does not reach topP inside the window, the whole window is kept.
     *
     * <p>Computed the other way round, with the same result: the cut over all candidates first
     * ({@link #bestFirstPrefix}, which sorts only a prefix holding the mass). A window whose floor is
     * at or below the cut's last logit holds the whole cut, so the cut stands; only a window lying
     * strictly inside the cut (a rounding edge, or the min-p floor) could have ended the search
     * early and kept itself instead, and only those windows are summed, in the original candidate
     * order. Usually there are none.
     */
    private int topP(float[] values, int count, float max, double minPLogit) {
        // Each candidate's exp(logit - max) once: every sum below adds these same values in the same order.
        double[] weight = tokenWeights;
        double normalizer = 0;
        for (int i = 0; i < count; i++) {
            int token = candidates[i];
            normalizer += weight[token] = Math.exp(values[token] - max);
        }
        double needed = params.topP();
        // the candidate order the window sums use (bestFirstPrefix reorders candidates)
        if (windowOrder.length < count) windowOrder = new int[candidates.length];
        System.arraycopy(candidates, 0, windowOrder, 0, count);
        int cut = bestFirstPrefix(values, count, max, normalizer, needed);
        float last = values[candidates[cut - 1]];
        for (double width = 8; ; width *= 2) {
            double floor = max - width;
            // Below the min-p cut nothing survives anyway, so the window never has to reach further.
            boolean lastWindow = floor <= minPLogit;
            if (lastWindow) {
                floor = minPLogit;
            }
            if (last >= floor) {
                return cut;   // this window, and any wider one, holds the whole cut
            }
            double mass = 0;
            int inWindow = 0;
            for (int i = 0; i < count; i++) {
                int token = windowOrder[i];
                if (values[token] >= floor) {
                    mass += weight[token];
                    inWindow++;
                }
            }
            if (mass / normalizer >= needed || lastWindow) {
                // a best-first prefix of the cut, which candidates already hold in order
                return inWindow;
            }
        }
    }

    /** Logit buckets of the top-p histogram. */
    private static final int BUCKETS = 2048;

    /**
     * Orders candidates[0, count) best first only as far as top-p needs, and returns the cut: the
     * same as sorting them all and scanning the cumulative mass, but only a best-first prefix that
     * holds the needed mass is sorted. A histogram of the mass over logit buckets below the best
     * finds the first bucket where the mass reaches {@code needed}; the tokens in it and above (a
     * prefix of the best-first order: the bucket index falls as the logit rises, ties share a
     * bucket) are sorted and scanned exactly as the full sort's prefix was, same order, same sums.
     * Should that scan fall short (the histogram's sums round differently), the next bucket's
     * tokens follow, sorted, and the scan goes on: the result never depends on the histogram.
     * Leaves the kept prefix best first in candidates[0, result).
     */
    private int bestFirstPrefix(float[] values, int count, float max, double normalizer, double needed) {
        long[] keys = sortKeys;
        float min = max;
        for (int i = 0; i < count; i++) {
            int token = candidates[i];
            keys[i] = bestFirstKey(values[token], token);
            min = Math.min(min, values[token]);
        }
        double scale = max > min ? (BUCKETS - 1) / ((double) max - min) : 0;
        double[] mass = bucketMass;
        Arrays.fill(mass, 0);
        for (int i = 0; i < count; i++) {
            int token = candidates[i];
            mass[bucket(values[token], max, scale)] += tokenWeights[token];
        }
        int last = 0;
        double target = needed * normalizer, sum = 0;
        while (last < BUCKETS - 1 && (sum += mass[last]) < target) last++;

        double cumulative = 0;
        int done = 0;
        while (done < count) {
            // Brings the tokens of buckets [0, last] to keys[done, end), then sorts just those.
            int end = done;
            for (int i = done; i < count; i++) {
                long key = keys[i];
                if (bucket(values[(int) key], max, scale) <= last) {
                    keys[i] = keys[end];
                    keys[end++] = key;
                }
            }
            Arrays.sort(keys, done, end);
            for (int i = done; i < end; i++) {
                int token = (int) keys[i];
                candidates[i] = token;
                cumulative += tokenWeights[token] / normalizer;
                if (cumulative >= needed) {
                    return i + 1;
                }
            }
            done = end;
            last++;
            while (last < BUCKETS - 1 && mass[last] == 0) last++;
        }
        return count;
    }

    /** The histogram bucket of a logit: 0 for the best, rising as the logit falls (monotone). */
    private static int bucket(float logit, float max, double scale) {
        return Math.min(BUCKETS - 1, (int) (((double) max - logit) * scale));
    }

    /** Puts {@code key} at {@code hole} of the max-heap heap[0, size) and sifts it down. */
    private static void siftDown(long[] heap, int hole, long key, int size) {
        int parent = hole;
        while (true) {
            int child = 2 * parent + 1;
            if (child >= size) break;
            if (child + 1 < size && heap[child + 1] > heap[child]) child++;
            if (heap[child] <= key) break;
            heap[parent] = heap[child];
            parent = child;
        }
        heap[parent] = key;
    }

    /** Ascending order of the key = descending logit, then ascending token id. */
    private static long bestFirstKey(float logit, int token) {
        int bits = Float.floatToIntBits(logit == 0f ? 0f : logit);
        int ascending = bits ^ ((bits >> 31) & 0x7FFFFFFF);
        return ((long) ~ascending << 32) | token;
    }

    /** The k best finite tokens, best first (bounded max-heap of keys, O(n log k)). */
    static int[] topIndices(float[] values, int n, int k) {
        if (k <= 0) {
            return new int[0];
        }
        long[] heap = new long[k];
        int size = bestKeys(values, n, k, heap);
        int[] result = new int[size];
        for (int i = 0; i < size; i++) {
            result[i] = (int) heap[i];
        }
        return result;
    }

    /**
     * Leaves the keys of the k best finite tokens in heap[0, result), sorted best first: a bounded
     * max-heap of the k smallest keys over one pass (O(n log k)), then a sort of those k only.
     */
    private static int bestKeys(float[] values, int n, int k, long[] heap) {
        int size = 0;
        for (int i = 0; i < n; i++) {
            if (values[i] == Float.NEGATIVE_INFINITY) {
                continue;
            }
            long key = bestFirstKey(values[i], i);
            if (size < k) {
                int child = size++;
                while (child > 0) {
                    int parent = (child - 1) >>> 1;
                    if (heap[parent] >= key) break;
                    heap[child] = heap[parent];
                    child = parent;
                }
                heap[child] = key;
            } else if (key < heap[0]) {
                siftDown(heap, 0, key, size);
            }
        }
        Arrays.sort(heap, 0, size);
        return size;
    }

    private static int argmax(float[] values, int n) {
        int best = 0;
        for (int i = 1; i < n; i++) {
            if (values[i] > values[best]) {
                best = i;
            }
        }
        return best;
    }

    private static double logSumExp(float[] values, int n) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            max = Math.max(max, values[i]);
        }
        double sum = 0;
        for (int i = 0; i < n; i++) {
            sum += Math.exp(values[i] - max);
        }
        return max + Math.log(sum);
    }
}
