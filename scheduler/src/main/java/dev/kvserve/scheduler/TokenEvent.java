package dev.kvserve.scheduler;

/**
 * One streamed increment of a generation. Each sampled token produces exactly one event, in order;
 * concatenating every event's {@code text} gives {@link GenerationResult#text()}.
 *
 * <p>{@code text} may be empty: a token can end in the middle of a UTF-8 character, or its text
 * could be the beginning of a stop string and is held back until that is decided. The last event
 * carries the {@code result}; it is also the only event that can have no token ({@code tokenId}
 * -1), when the generation ended without sampling one (cancelled, or the context was full).
 *
 * @param tokenId  the sampled token, or -1
 * @param text     text that became final with this event
 * @param logprob  the token's log-probability info when requested, else null
 * @param result   the whole result on the last event, else null
 */
public record TokenEvent(int tokenId, String text, TokenLogprob logprob, GenerationResult result) {

    public boolean isLast() {
        return result != null;
    }
}
