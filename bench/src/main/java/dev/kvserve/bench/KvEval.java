package dev.kvserve.bench;

import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.runtime.eval.Perplexity;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.model.SequenceChunk;
import java.util.Arrays;
import java.util.List;

/**
 * Perplexity of a text through the decode path, with the KV memory a policy really holds.
 *
 * <p>The tokens (BOS first) are cut into consecutive windows of {@code ctx} tokens; each window
 * starts from an empty sequence with its first token replaced by BOS, as llama-perplexity does.
 * Inside a window the first {@code prefill} tokens (if any) go through the model in one chunk, as a
 * prompt would; every later token is its own forward step, so an eviction rule acts exactly as it
 * would while generating (policies that act once after a prompt act after the prefill chunk, so they
 * need {@code prefill > 1}). Every token from position 1 on is scored (the logits after token j
 * predict token j+1), unlike llama-perplexity, which scores only the second half of a chunk.
 *
 * <p>Memory is measured, not computed: after every step the pool's {@code bytesUsed} (which, with
 * one sequence open, is what that sequence holds) is divided by the sequence's length. The fp16
 * reference is what the same pool's accounting charges an fp16 sequence of that length
 * ({@link KvCacheManager#bytesFor}: whole blocks, no eviction), the cache llama.cpp uses by default.
 */
public final class KvEval {

    /** @param ctx window length; @param prefill tokens of each window run as one prompt chunk (0: none); @param maxTokens ≤ 0: the whole text */
    public record Options(int ctx, int prefill, int maxTokens) {
        public Options {
            if (ctx < 2) throw new IllegalArgumentException("--ctx must be at least 2, got " + ctx);
            if (prefill < 0) throw new IllegalArgumentException("--prefill must be >= 0, got " + prefill);
        }
    }

    /**
     * @param tokens            text tokens evaluated (including each window's first token)
     * @param predictions       scored tokens
     * @param bytesPerToken     Σ bytes held ÷ Σ tokens in the cache, over every step
     * @param bytesPerTokenEnd  the same over the last step of every window only
     * @param fp16BytesPerToken the fp16 reference, averaged like {@code bytesPerToken}
     * @param ratio             fp16 bytes ÷ bytes held, averaged over steps (higher is smaller)
     * @param ratioEnd          the same at the end of the windows
     * @param peakBytes         most bytes the pool held at once
     * @param seconds           wall time of the evaluation (forward steps, scoring, accounting)
     */
    public record Result(String policy, int windows, long tokens, long predictions, double ppl, double pplError,
                         double meanNll, double bytesPerToken, double bytesPerTokenEnd, double fp16BytesPerToken,
                         double ratio, double ratioEnd, long peakBytes, double seconds) {
        public double tokensPerSecond() {
            return tokens / seconds;
        }
    }

    /** Told after every step with the tokens consumed so far and the running perplexity. */
    public interface Progress {
        void update(long tokensDone, double runningPpl);
    }

    private KvEval() {}

    /** How many tokens of {@code available} an evaluation with {@code o} consumes. */
    public static int tokensUsed(int available, Options o) {
        return o.maxTokens() > 0 ? Math.min(available, o.maxTokens()) : available;
    }

    public static Result run(LlamaModel model, KvCacheManager kvm, KvCachePolicy policy, int[] tokens, Options o,
                             Progress progress) {
        if (o.ctx() > model.config().contextLength()) {
            throw new IllegalArgumentException("--ctx " + o.ctx() + " exceeds the model's context " + model.config().contextLength());
        }
        int n = tokensUsed(tokens.length, o);
        if (n < 2) throw new IllegalArgumentException("the text has " + n + " tokens; at least 2 are needed");
        int vocab = model.config().vocabSize();
        int bos = model.tokenizer().bos();
        KvCachePolicy fp16 = KvCachePolicy.parse("fp16");
        Perplexity.Accumulator acc = new Perplexity.Accumulator();
        double held = 0, reference = 0, length = 0, heldEnd = 0, referenceEnd = 0, lengthEnd = 0;
        long peak = 0, consumed = 0;
        int windows = 0;
        long start = System.nanoTime();
        for (int first = 0; first + 1 < n; first += o.ctx()) {
            int len = Math.min(o.ctx(), n - first);
            if (len < 2) break;
            int[] w = Arrays.copyOfRange(tokens, first, first + len);
            if (bos >= 0) w[0] = bos;
            windows++;
            try (PagedSequence seq = kvm.open(policy)) {
                // The last token of a window predicts nothing in it, so it is never fed.
                int fed = 0;
                int prompt = Math.min(o.prefill(), len - 1);
                while (fed < len - 1) {
                    int step = fed == 0 && prompt > 1 ? prompt : 1;
                    // The prefill chunk ends the prompt: policies that decide once after it (SnapKV, budgets) act there.
                    float[] logits = model.forward(List.of(new SequenceChunk(seq, Arrays.copyOfRange(w, fed, fed + step), true,
                            step > 1)))[0];
                    for (int j = 0; j < step; j++) {
                        acc.add(Perplexity.negativeLogLikelihood(logits, j * vocab, vocab, w[fed + j + 1]));
                    }
                    fed += step;
                    long bytes = kvm.stats().bytesUsed();
                    long ref = kvm.bytesFor(fp16, seq.length());
                    held += bytes;
                    reference += ref;
                    length += seq.length();
                    peak = Math.max(peak, bytes);
                    if (fed == len - 1) {
                        heldEnd += bytes;
                        referenceEnd += ref;
                        lengthEnd += seq.length();
                    }
                    if (progress != null) progress.update(consumed + fed, acc.ppl());
                }
            }
            consumed += len;
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        Perplexity.Result r = acc.result(windows);
        return new Result(policy.toString(), windows, consumed, r.predictions(), r.ppl(), r.error(), r.meanNll(),
                held / length, heldEnd / lengthEnd, reference / length, reference / held, referenceEnd / heldEnd,
                peak, seconds);
    }
}
