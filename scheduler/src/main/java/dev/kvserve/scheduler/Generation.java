package dev.kvserve.scheduler;

import dev.kvserve.runtime.tokenizer.StreamingDecoder;
import dev.kvserve.runtime.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * The output side of one request, driven by the engine thread: picks each next token from the
 * step's logits, turns tokens into UTF-8-safe text, applies stop strings, max tokens, EOS and the
 * context limit, and reports to the caller's listener. Its {@link Sequence} is the scheduling side.
 */
final class Generation {

    final GenerationRequest request;
    final Sequence sequence;
    final GenerationHandle handle;
    final long submittedNanos;

    private final GenerationListener listener;
    private final CompletableFuture<GenerationResult> future;
    private final TokenPicker picker;
    private final Tokenizer tokenizer;
    private final StreamingDecoder decoder;
    private final StopStrings stops;
    private final int contextLength;
    private final EngineLoop loop;
    private final List<TokenLogprob> logprobs = new ArrayList<>();
    private long lastTokenNanos;
    /** Left the waiting queue for the first time (the queue bound counts only requests not yet admitted). */
    boolean admitted;

    Generation(long id, GenerationRequest request, int[] prompt, String policy, TokenPicker picker, Tokenizer tokenizer,
               int contextLength, GenerationListener listener, CompletableFuture<GenerationResult> future,
               EngineLoop loop, long submittedNanos) {
        this.request = request;
        this.sequence = new Sequence(id, id, prompt, policy, this);
        this.loop = loop;
        this.handle = new GenerationHandle(id, future, () -> loop.cancel(this));
        this.listener = listener;
        this.future = future;
        this.picker = picker;
        this.tokenizer = tokenizer;
        this.decoder = new StreamingDecoder(tokenizer);
        this.stops = new StopStrings(request.stop());
        this.contextLength = contextLength;
        this.submittedNanos = submittedNanos;
    }

    boolean isDone() {
        return future.isDone();
    }

    /**
     * Picks the next token from its logits and reports it. When this token ends the generation
     * (or the listener throws), the sequence's blocks are freed before the caller hears of it.
     */
    void accept(float[] logits, long nowNanos, EngineCounters counters) {
        int token = picker.pick(logits, sequence);
        TokenLogprob logprob = picker.lastLogprob();
        sequence.append(token);
        if (logprob != null) logprobs.add(logprob);
        if (lastTokenNanos == 0) counters.firstToken(nowNanos - submittedNanos);
        else counters.nextToken(nowNanos - lastTokenNanos);
        lastTokenNanos = nowNanos;

        boolean endOfGeneration = !request.ignoreEos() && tokenizer.isEndOfGeneration(token);
        String text = endOfGeneration ? "" : stops.append(decoder.append(token));
        FinishReason reason = null;
        if (endOfGeneration || stops.stopped()) {
            reason = FinishReason.STOP;
        } else if (sequence.generatedCount() >= request.maxTokens() || sequence.length() > contextLength) {
            reason = FinishReason.LENGTH;
        }
        if (reason != null) {
            text += flush();
            loop.release(this);
        }
        emit(new TokenEvent(token, text, logprob, reason == null ? null : result(reason)));
    }

    /** Ends without a new token (cancelled, out of context or KV space): what is held back is final. */
    void end(FinishReason reason) {
        if (isDone()) return;
        loop.release(this);
        emit(new TokenEvent(-1, flush(), null, result(reason)));
    }

    /** Fails the request; no more callbacks. */
    void fail(Throwable error) {
        if (isDone()) return;
        loop.release(this);
        future.completeExceptionally(error);
        try {
            listener.onError(error);
        } catch (RuntimeException ignored) {
            // The request is over either way.
        }
    }

    private String flush() {
        return stops.append(decoder.finish()) + stops.flush();
    }

    private GenerationResult result(FinishReason reason) {
        int[] generated = sequence.generatedTokens();
        return new GenerationResult(stops.releasedText(), generated, reason, sequence.promptLength, generated.length, logprobs);
    }

    private void emit(TokenEvent event) {
        if (isDone()) return;
        try {
            listener.onToken(event);
        } catch (RuntimeException | AssertionError listenerFailure) {
            // A broken listener ends its own request, never the engine.
            loop.release(this);
            future.completeExceptionally(listenerFailure);
            return;
        }
        if (event.result() != null) {
            future.complete(event.result());
            try {
                listener.onComplete(event.result());
            } catch (RuntimeException | AssertionError ignored) {
                // Nothing is left to report to.
            }
        }
    }
}
