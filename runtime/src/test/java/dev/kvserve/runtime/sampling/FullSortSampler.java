package dev.kvserve.runtime.sampling;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * The sampler as it was before partial selection (commit 9911520), kept verbatim as the reference
 * that {@link Sampler} must reproduce token for token: its top-p sorted every candidate in the
 * window, up to the whole vocabulary. Picks one sequence's next token from logits.
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
final class FullSortSampler {
    private final SamplingParams params;
    private final SplittableRandom random;
    private float[] adjusted = new float[0];
    private int[] occurrences = new int[0];
    private int[] candidates = new int[0];
    private long[] sortKeys = new long[0];
    private double[] weightBuffer = new double[1];

    FullSortSampler(SamplingParams params) {
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
        float[] penalized = prepare(logits, history);
        return choose(penalized);
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
            adjusted = new float[n];
            occurrences = new int[n];
            candidates = new int[n];
            sortKeys = new long[n];
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
        int count = 0;
        for (int i = 0; i < n; i++) {
            if (values[i] != Float.NEGATIVE_INFINITY) {
                candidates[count++] = i;
            }
        }
        if (params.topK() > 0 && params.topK() < count) {
            int[] top = topIndices(values, n, params.topK());
            System.arraycopy(top, 0, candidates, 0, top.length);
            count = top.length;
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
     * all of them) reaches topP. Only tokens near the top need sorting: widen a logit window below
     * the best until it holds enough mass, or until min-p would drop the rest anyway.
     */
    private int topP(float[] values, int count, float max, double minPLogit) {
        double normalizer = 0;
        for (int i = 0; i < count; i++) {
            normalizer += Math.exp(values[candidates[i]] - max);
        }
        double needed = params.topP();
        int windowCount = count;
        for (double width = 8; ; width *= 2) {
            double floor = max - width;
            // Below the min-p cut nothing survives anyway, so the window never has to reach further.
            boolean lastWindow = floor <= minPLogit;
            if (lastWindow) {
                floor = minPLogit;
            }
            double mass = 0;
            int inWindow = 0;
            for (int i = 0; i < count; i++) {
                if (values[candidates[i]] >= floor) {
                    mass += Math.exp(values[candidates[i]] - max);
                    inWindow++;
                }
            }
            if (mass / normalizer >= needed || lastWindow) {
                int kept = 0;
                for (int i = 0; i < count; i++) {
                    if (values[candidates[i]] >= floor) {
                        candidates[kept++] = candidates[i];
                    }
                }
                windowCount = kept;
                break;
            }
            if (inWindow == count) {
                break;
            }
        }
        sortBestFirst(values, windowCount);
        double cumulative = 0;
        for (int i = 0; i < windowCount; i++) {
            cumulative += Math.exp(values[candidates[i]] - max) / normalizer;
            if (cumulative >= needed) {
                return i + 1;
            }
        }
        return windowCount;
    }

    private void sortBestFirst(float[] values, int count) {
        for (int i = 0; i < count; i++) {
            sortKeys[i] = bestFirstKey(values[candidates[i]], candidates[i]);
        }
        Arrays.sort(sortKeys, 0, count);
        for (int i = 0; i < count; i++) {
            candidates[i] = (int) sortKeys[i];
        }
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
                int parent = 0;
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
        }
        long[] sorted = Arrays.copyOf(heap, size);
        Arrays.sort(sorted);
        int[] result = new int[size];
        for (int i = 0; i < size; i++) {
            result[i] = (int) sorted[i];
        }
        return result;
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
