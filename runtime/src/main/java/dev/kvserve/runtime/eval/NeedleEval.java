package dev.kvserve.runtime.eval;

import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.model.SequenceChunk;
import dev.kvserve.runtime.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.List;

/**
 * Retrieval accuracy of KV-cache policies on {@link NeedleTask} prompts: for each trial the haystack
 * is prefilled in one step, the question follows (see {@link QuestionMode}), the model answers
 * greedily for {@code answerTokens} tokens, and the trial counts when the needle's name is in the
 * answer. Every policy sees the same prompts (same seeds). A control run with the name left out of
 * the needle sentence tells how often the names come out by chance.
 */
public final class NeedleEval {

    /** Where the question goes relative to the cache compression. */
    public enum QuestionMode {
        /**
         * The question is part of the prompt, prefilled with the haystack (as LongBench / NIAH runs in
         * the SnapKV, H2O and ClusterKV papers): compression after the prompt knows the question.
         * The first answer token is computed during prefill with every token visible.
         */
        PROMPT,
        /**
         * The haystack alone is the prompt; the question is fed token by token afterwards, so the
         * cache is compressed before the question is known and every answer token is computed from
         * the compressed cache (the stricter, query-agnostic setting).
         */
        DECODE
    }

    /**
     * What to run.
     *
     * @param length       prompt tokens (haystack + question), BOS included
     * @param depth        where the needle sits in the haystack, 0 (start) .. 1 (end)
     * @param trials       prompts per policy, seeds {@code seed, seed+1, ...}
     * @param mode         whether the question is prefilled with the haystack or decoded after it
     * @param cue          the question's wording (see {@link NeedleTask.Cue})
     * @param answerTokens greedy tokens generated after the question
     */
    public record Config(int length, double depth, int trials, long seed, QuestionMode mode, NeedleTask.Cue cue, int answerTokens) {

        public Config {
            if (length < 1 || trials < 1 || answerTokens < 1) {
                throw new IllegalArgumentException("needle eval needs positive --len, trials and answer tokens, got " + length + ", "
                        + trials + ", " + answerTokens);
            }
            if (!(depth >= 0 && depth <= 1)) throw new IllegalArgumentException("needle depth must be in [0, 1], got " + depth);
        }

        /** 20 trials from seed 1000, question decoded after the haystack, cue I_AM, 12 answer tokens. */
        public static Config of(int length, double depth) {
            return new Config(length, depth, 20, 1000, QuestionMode.DECODE, NeedleTask.Cue.I_AM, 12);
        }

        public Config withDepth(double d) {
            return new Config(length, d, trials, seed, mode, cue, answerTokens);
        }
    }

    /**
     * @param policy     the policy spec in canonical form (or the control's description)
     * @param accuracy   hits / trials
     * @param keptTokens mean over trials of the live (layer, KV head, token) entries when the answer
     *                   ended, divided by layers × KV heads: tokens per head actually cached
     * @param peakBytes  largest pool bytes one trial's sequence held
     */
    public record Result(String policy, int length, double depth, int trials, int hits, double accuracy, double keptTokens,
                         long peakBytes, List<String> answers) {}

    private NeedleEval() {}

    /**
     * Runs the configured prompts under {@code policySpec} (sequences opened from {@code manager},
     * which must belong to the model's geometry). {@code policySpec = null} runs the control: the
     * full cache (fp32) on the same prompts with the needle's name left out.
     *
     * @throws IllegalArgumentException for a bad spec, or a prompt plus answer longer than the model's context
     */
    public static Result run(LlamaModel model, KvCacheManager manager, String policySpec, Config config) {
        int length = config.length(), trials = config.trials(), answerTokens = config.answerTokens();
        double depth = config.depth();
        QuestionMode mode = config.mode();
        if (length + answerTokens > model.config().contextLength()) {
            throw new IllegalArgumentException("--len " + length + " plus " + answerTokens + " answer tokens exceeds the model's context "
                    + model.config().contextLength());
        }
        boolean control = policySpec == null;
        KvCachePolicy policy = KvCachePolicy.parse(control ? "fp32" : policySpec);
        Tokenizer tok = model.tokenizer();
        int hits = 0;
        double kept = 0;
        long peak = 0;
        List<String> answers = new ArrayList<>();
        for (int t = 0; t < trials; t++) {
            NeedleTask.Sample sample = NeedleTask.generate(tok, length, depth, config.seed() + t, !control, config.cue());
            int[] prompt = mode == QuestionMode.PROMPT ? sample.prompt() : sample.haystack();
            try (PagedSequence seq = manager.open(policy)) {
                // the prefill ends the prompt: one-time post-prompt decisions (SnapKV, D2O budgets, ClusterKV) happen here
                float[] logits = model.forward(List.of(new SequenceChunk(seq, prompt, false, true)))[0];
                peak = Math.max(peak, seq.bytesHeld());
                if (mode == QuestionMode.DECODE) {
                    for (int q : sample.question()) {
                        logits = model.forward(List.of(new SequenceChunk(seq, new int[] {q}, false)))[0];
                        peak = Math.max(peak, seq.bytesHeld());
                    }
                }
                int[] answer = new int[answerTokens];
                int n = 0;
                while (n < answerTokens) {
                    int next = argmax(logits);
                    if (tok.isEndOfGeneration(next)) break;
                    answer[n++] = next;
                    if (n == answerTokens || seq.length() + 1 > model.config().contextLength()) break;
                    logits = model.forward(List.of(new SequenceChunk(seq, new int[] {next}, false)))[0];
                    peak = Math.max(peak, seq.bytesHeld());
                }
                String text = tok.decode(java.util.Arrays.copyOf(answer, n));
                answers.add(text);
                if (NeedleTask.retrieved(text, sample.needle())) hits++;
                kept += (double) seq.liveTokens() / (model.config().layers() * model.kvGeometry().kvHeads());
            }
        }
        return new Result(control ? "control (no needle, full cache)" : policy.toString(), length, depth, trials, hits,
                (double) hits / trials, kept / trials, peak, answers);
    }

    private static int argmax(float[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
}
