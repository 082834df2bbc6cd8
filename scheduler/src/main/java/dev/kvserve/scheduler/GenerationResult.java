package dev.kvserve.scheduler;

import java.util.Arrays;
import java.util.List;

/**
 * A finished generation.
 *
 * @param text             generated text, cut before the first stop string that matched; never
 *                         the text of an end-of-generation token
 * @param tokenIds         every token generated, including an end-of-generation token and tokens
 *                         past the start of a stop string (the text is cut, the tokens are not)
 * @param finishReason     why it ended
 * @param promptTokens     tokens of the prompt (BOS included when added)
 * @param completionTokens {@code tokenIds.length}
 * @param logprobs         one entry per token id when logprobs were requested, else empty
 */
public record GenerationResult(
        String text,
        int[] tokenIds,
        FinishReason finishReason,
        int promptTokens,
        int completionTokens,
        List<TokenLogprob> logprobs) {

    public GenerationResult {
        tokenIds = tokenIds.clone();
        logprobs = List.copyOf(logprobs);
    }

    @Override
    public int[] tokenIds() {
        return tokenIds.clone();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof GenerationResult r && text.equals(r.text) && Arrays.equals(tokenIds, r.tokenIds)
                && finishReason == r.finishReason && promptTokens == r.promptTokens
                && completionTokens == r.completionTokens && logprobs.equals(r.logprobs);
    }

    @Override
    public int hashCode() {
        return text.hashCode() * 31 + Arrays.hashCode(tokenIds);
    }

    @Override
    public String toString() {
        return "GenerationResult[" + finishReason + ", " + promptTokens + "+" + completionTokens + " tokens, text=" + text + "]";
    }
}
