package dev.kvserve.runtime.eval;

import dev.kvserve.kvcache.SequenceKv;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.model.SequenceChunk;
import java.util.List;
import java.util.function.Supplier;

/**
 * Perplexity computed exactly as llama.cpp's {@code llama-perplexity} does, so the two programs can
 * be compared digit for digit: the text is tokenized once with BOS first and cut into
 * non-overlapping chunks of {@code ctx} tokens; each chunk starts from an empty cache with its first
 * token replaced by BOS; only the second half is scored (the logits at positions ctx/2 .. ctx-2
 * predict the tokens after them), because the first half only gives the scored tokens context.
 */
public final class Perplexity {

    /** @param ppl exp(mean NLL); @param error llama.cpp's ± (ppl · sqrt(var(NLL)/(N-1))) */
    public record Result(double ppl, double error, int chunks, long predictions, double meanNll) {}

    /** Running mean and variance of negative log-likelihoods, in llama.cpp's arithmetic. */
    public static final class Accumulator {
        private double nll, nll2;
        private long count;

        public void add(double v) {
            nll += v;
            nll2 += v * v;
            count++;
        }

        public long count() { return count; }

        public double ppl() { return Math.exp(nll / count); }

        public Result result(int chunks) {
            double mean = nll / count;
            double var = nll2 / count - mean * mean;
            double ppl = Math.exp(mean);
            double err = var > 0 && count > 1 ? Math.sqrt(var / (count - 1)) * ppl : 0;
            return new Result(ppl, err, chunks, count, mean);
        }
    }

    /** Listener told after every chunk (for progress bars and llama.cpp's running "[i]ppl" print). */
    public interface Progress {
        void chunkDone(int chunk, int chunks, double runningPpl);
    }

    private Perplexity() {}

    /**
     * @param tokens   the whole text, tokenized with BOS first
     * @param ctx      chunk length (llama.cpp's -c)
     * @param maxChunks at most this many chunks (≤ 0: all)
     * @param caches   a fresh, empty cache per chunk (closed here after use)
     */
    public static Result compute(LlamaModel model, int[] tokens, int ctx, int maxChunks,
                                 Supplier<SequenceKv> caches, Progress progress) {
        if (ctx < 4) throw new IllegalArgumentException("--ctx must be at least 4, got " + ctx);
        if (ctx > model.config().contextLength()) {
            throw new IllegalArgumentException("--ctx " + ctx + " exceeds the model's context " + model.config().contextLength());
        }
        int chunks = tokens.length / ctx;
        if (maxChunks > 0) chunks = Math.min(chunks, maxChunks);
        if (chunks == 0) {
            throw new IllegalArgumentException("the text has " + tokens.length + " tokens, fewer than one chunk of " + ctx);
        }
        int vocab = model.config().vocabSize();
        int bos = model.tokenizer().bos();
        int first = ctx / 2;
        Accumulator acc = new Accumulator();
        for (int c = 0; c < chunks; c++) {
            int start = c * ctx;
            int[] chunk = java.util.Arrays.copyOfRange(tokens, start, start + ctx);
            if (bos >= 0) chunk[0] = bos;
            float[] logits;
            try (SequenceKv cache = caches.get()) {
                logits = model.forward(List.of(new SequenceChunk(cache, chunk, true)))[0];
            }
            for (int j = first; j < ctx - 1; j++) {
                acc.add(negativeLogLikelihood(logits, j * vocab, vocab, tokens[start + j + 1]));
            }
            if (progress != null) progress.chunkDone(c + 1, chunks, acc.ppl());
        }
        return acc.result(chunks);
    }

    /** -log softmax(logits[offset .. offset+vocab))[target], in double precision. */
    public static double negativeLogLikelihood(float[] logits, int offset, int vocab, int target) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < vocab; i++) max = Math.max(max, logits[offset + i]);
        double sum = 0;
        for (int i = 0; i < vocab; i++) sum += Math.exp(logits[offset + i] - max);
        return Math.log(sum) - (logits[offset + target] - max);
    }
}
