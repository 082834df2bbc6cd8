package dev.kvserve.scheduler;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/** Test sampler: greedy at temperature 0, else seeded sampling from softmax(logits / T); raw log-softmax logprobs. */
final class SeededPicker implements TokenPicker {

    static final TokenPicker.Factory FACTORY = (request, seed, prompt) -> {
        if (request.temperature() < 0) throw new IllegalArgumentException("temperature must be >= 0, got " + request.temperature());
        return new SeededPicker(request, seed);
    };

    private final GenerationRequest request;
    private final Random random;
    private final TinyTokenizer tokenizer = new TinyTokenizer();
    private TokenLogprob last;

    private SeededPicker(GenerationRequest request, long seed) {
        this.request = request;
        this.random = new Random(seed);
    }

    @Override
    public int pick(float[] logits, Sequence sequence) {
        double[] logSoftmax = logSoftmax(logits, 1);
        int chosen;
        if (request.temperature() == 0) {
            chosen = 0;
            for (int i = 1; i < logits.length; i++) if (logits[i] > logits[chosen]) chosen = i;
        } else {
            double[] scaled = logSoftmax(logits, request.temperature());
            double u = random.nextDouble();
            chosen = logits.length - 1;
            double acc = 0;
            for (int i = 0; i < logits.length; i++) {
                acc += Math.exp(scaled[i]);
                if (u < acc) {
                    chosen = i;
                    break;
                }
            }
        }
        last = null;
        if (request.logprobs() != 0) {
            List<TokenLogprob.Candidate> top = new ArrayList<>();
            if (request.logprobs() > 0) {
                boolean[] taken = new boolean[logits.length];
                for (int k = 0; k < request.logprobs(); k++) {
                    int best = -1;
                    for (int i = 0; i < logits.length; i++) if (!taken[i] && (best < 0 || logSoftmax[i] > logSoftmax[best])) best = i;
                    taken[best] = true;
                    top.add(new TokenLogprob.Candidate(best, tokenizer.piece(best), (float) logSoftmax[best]));
                }
            }
            last = new TokenLogprob(chosen, tokenizer.piece(chosen), (float) logSoftmax[chosen], top);
        }
        return chosen;
    }

    @Override public TokenLogprob lastLogprob() { return last; }

    private static double[] logSoftmax(float[] logits, double temperature) {
        double max = Double.NEGATIVE_INFINITY;
        for (float l : logits) max = Math.max(max, l / temperature);
        double sum = 0;
        for (float l : logits) sum += Math.exp(l / temperature - max);
        double log = Math.log(sum) + max;
        double[] out = new double[logits.length];
        for (int i = 0; i < logits.length; i++) out[i] = logits[i] / temperature - log;
        return out;
    }
}
