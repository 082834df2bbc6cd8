package dev.kvserve.scheduler;

import dev.kvserve.runtime.sampling.IntCollection;
import dev.kvserve.runtime.sampling.SampledToken;
import dev.kvserve.runtime.sampling.Sampler;
import dev.kvserve.runtime.sampling.SamplingParams;
import dev.kvserve.runtime.tokenizer.Tokenizer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link TokenPicker} over the runtime's seeded {@link Sampler}: llama.cpp's sampler chain, with
 * penalties looking at the sequence's prompt and generated tokens, and log-probabilities of the
 * model's (penalised) distribution.
 */
final class SamplerPicker implements TokenPicker {

    private final Sampler sampler;
    private final Tokenizer tokenizer;
    private final int logprobs;
    private TokenLogprob last;

    private SamplerPicker(Sampler sampler, Tokenizer tokenizer, int logprobs) {
        this.sampler = sampler;
        this.tokenizer = tokenizer;
        this.logprobs = logprobs;
    }

    /** Pickers for a model's tokenizer; bad sampling parameters throw IllegalArgumentException saying which. */
    static TokenPicker.Factory factory(Tokenizer tokenizer) {
        return (request, seed, prompt) -> {
            var params = new SamplingParams(request.temperature(), request.topK(), request.topP(), request.minP(),
                    request.repetitionPenalty(), request.presencePenalty(), request.frequencyPenalty(),
                    SamplingParams.DEFAULT_PENALTY_LAST_N, seed);
            return new SamplerPicker(new Sampler(params), tokenizer, request.logprobs());
        };
    }

    @Override
    public int pick(float[] logits, Sequence sequence) {
        IntCollection history = new IntCollection() {
            @Override public int size() { return sequence.length(); }
            @Override public int get(int index) { return sequence.token(index); }
        };
        if (logprobs == 0) {
            last = null;
            return sampler.sample(logits, history);
        }
        SampledToken sampled = sampler.sample(logits, history, Math.max(0, logprobs));
        List<TokenLogprob.Candidate> top = new ArrayList<>(sampled.topTokens().length);
        for (int i = 0; i < sampled.topTokens().length; i++) {
            top.add(new TokenLogprob.Candidate(sampled.topTokens()[i], text(sampled.topTokens()[i]), sampled.topLogprobs()[i]));
        }
        last = new TokenLogprob(sampled.token(), text(sampled.token()), sampled.logprob(), top);
        return sampled.token();
    }

    @Override
    public TokenLogprob lastLogprob() {
        return last;
    }

    /** A token's own text: its bytes as UTF-8 (a partial character shows as U+FFFD). */
    private String text(int token) {
        return new String(tokenizer.tokenBytes(token), StandardCharsets.UTF_8);
    }
}
