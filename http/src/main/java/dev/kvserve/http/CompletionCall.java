package dev.kvserve.http;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kvserve.http.openai.ApiException;
import dev.kvserve.http.openai.Json;
import dev.kvserve.http.openai.OpenAiFormat;
import dev.kvserve.http.openai.OpenAiFormat.Envelope;
import dev.kvserve.scheduler.FinishReason;
import dev.kvserve.scheduler.GenerationListener;
import dev.kvserve.scheduler.GenerationRequest;
import dev.kvserve.scheduler.GenerationResult;
import dev.kvserve.scheduler.QueueFullException;
import dev.kvserve.scheduler.TokenEvent;
import dev.kvserve.scheduler.TokenLogprob;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.handler.codec.http.DefaultHttpContent;
import io.netty.handler.codec.http.DefaultHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpResponse;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.LastHttpContent;
import io.netty.util.concurrent.Future;
import io.netty.util.concurrent.GenericFutureListener;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * One completion request in flight: its choices' generations in the engine and the response being
 * written. Engine callbacks only enqueue and schedule a drain on the channel's event loop; all
 * response state is touched on that loop alone, so neither thread ever waits for the other.
 *
 * <p>While streaming, a drain writes only when the channel is writable; what queues up meanwhile is
 * coalesced into fewer, larger chunks once the client reads again, so a slow client costs memory
 * bounded by its own output and never stalls the engine. Closing the connection cancels every
 * choice's generation, which frees its KV blocks at the engine's next step.
 */
final class CompletionCall {

    private static final Logger LOG = Logger.getLogger(CompletionCall.class.getName());

    enum Api { CHAT, TEXT }

    /** One sequence to generate; {@code index} is the choice index clients see. */
    static final class Choice {
        final int index;
        final GenerationRequest request;
        final String echo;
        volatile ServingBackend.Cancellable handle;
        // event-loop state
        final StringBuilder text = new StringBuilder();
        final List<TokenLogprob> logprobs = new ArrayList<>();
        int logprobOffset;
        GenerationResult result;
        boolean done;

        Choice(int index, GenerationRequest request, String echo) {
            this.index = index;
            this.request = request;
            this.echo = echo;
        }
    }

    /** Exactly one of token, result, error is set. */
    private record Event(Choice choice, TokenEvent token, GenerationResult result, Throwable error) {}

    /** Told when the call has written its last byte (or its client is gone). */
    interface Owner {
        void callEnded(CompletionCall call, boolean keepConnection);
    }

    private final Api api;
    private final Channel channel;
    private final ServerState server;
    private final Envelope envelope;
    private final boolean stream;
    private final boolean includeUsage;
    private final boolean wantLogprobs;
    private final int promptTokens;
    private final List<Choice> choices;
    private final HttpVersion version;
    private final boolean keepAlive;
    private final String endpoint;
    private final Owner owner;

    private final Queue<Event> events = new ConcurrentLinkedQueue<>();
    private final AtomicBoolean drainScheduled = new AtomicBoolean();
    private final AtomicBoolean cancelled = new AtomicBoolean();
    private final GenericFutureListener<Future<? super Void>> onClose = f -> clientGone();

    // event-loop state
    private boolean began;
    private boolean ended;
    private int unfinished;

    CompletionCall(Api api, Channel channel, ServerState server, Envelope envelope, boolean stream, boolean includeUsage,
                   boolean wantLogprobs, int promptTokens, List<Choice> choices, HttpVersion version, boolean keepAlive,
                   String endpoint, Owner owner) {
        this.api = api;
        this.channel = channel;
        this.server = server;
        this.envelope = envelope;
        this.stream = stream;
        this.includeUsage = includeUsage;
        this.wantLogprobs = wantLogprobs;
        this.promptTokens = promptTokens;
        this.choices = List.copyOf(choices);
        this.version = version;
        this.keepAlive = keepAlive;
        this.endpoint = endpoint;
        this.owner = owner;
        this.unfinished = choices.size();
    }

    /**
     * Submits every choice (any thread but the event loop: submission may take a lock in the engine).
     * A full queue cancels what was already submitted and becomes a 503.
     */
    void start() {
        server.callStarted(this);
        channel.closeFuture().addListener(onClose);
        try {
            for (Choice choice : choices) {
                choice.handle = server.backend.submit(choice.request, listener(choice));
                if (cancelled.get()) choice.handle.cancel();
            }
        } catch (QueueFullException e) {
            abortBeforeStart(ApiException.overloaded(e.getMessage()));
            return;
        } catch (IllegalArgumentException e) {
            abortBeforeStart(ApiException.invalid(null, e.getMessage()));
            return;
        } catch (IllegalStateException e) {
            // The engine is closed or failed for good: the server cannot serve, /health says so too.
            LOG.log(Level.WARNING, "submitting a generation failed", e);
            abortBeforeStart(new ApiException(503, "server_error", null, "engine_unavailable",
                    "the engine is not serving requests now; retry later"));
            return;
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "submitting a generation failed", e);
            abortBeforeStart(new ApiException(500, "server_error", null, null, "generation could not start (see the server log for "
                    + envelope.id() + ")"));
            return;
        }
        onLoop(this::begin);
    }

    /** Stops every generation of this call (shutdown after the grace period, or the client left). */
    void cancel() {
        if (!cancelled.compareAndSet(false, true)) return;
        for (Choice c : choices) {
            ServingBackend.Cancellable h = c.handle;
            if (h != null) h.cancel();
        }
    }

    private void abortBeforeStart(ApiException error) {
        cancel();
        onLoop(() -> {
            if (ended) return;
            ended = true;
            began = true;
            detach();
            if (channel.isActive()) {
                ApiHandler.writeResponse(channel, ApiHandler.errorResponse(error, version), keepAlive);
                server.metrics.responded(endpoint, error.status());
            }
            owner.callEnded(this, keepAlive && channel.isActive());
        });
    }

    private GenerationListener listener(Choice choice) {
        return new GenerationListener() {
            @Override
            public void onToken(TokenEvent event) {
                enqueue(new Event(choice, event, null, null));
            }

            @Override
            public void onComplete(GenerationResult result) {
                // The last token event already carries the result; this covers an engine that ends
                // a generation without one.
                enqueue(new Event(choice, null, result, null));
            }

            @Override
            public void onError(Throwable error) {
                enqueue(new Event(choice, null, null, error));
            }
        };
    }

    private void enqueue(Event event) {
        events.add(event);
        if (drainScheduled.compareAndSet(false, true)) onLoop(this::drain);
    }

    private void onLoop(Runnable task) {
        try {
            channel.eventLoop().execute(task);
        } catch (RejectedExecutionException e) {
            // The server's event loops are gone (forced shutdown): nobody is left to answer.
            cancel();
        }
    }

    private void begin() {
        began = true;
        if (ended) return;
        if (!channel.isActive()) {
            clientGone();
            return;
        }
        if (stream) {
            HttpResponse head = new DefaultHttpResponse(version, HttpResponseStatus.OK);
            head.headers().set(HttpHeaderNames.CONTENT_TYPE, "text/event-stream; charset=utf-8");
            head.headers().set(HttpHeaderNames.CACHE_CONTROL, "no-cache");
            head.headers().set("X-Request-Id", envelope.id());
            if (version.equals(HttpVersion.HTTP_1_1)) {
                head.headers().set(HttpHeaderNames.TRANSFER_ENCODING, HttpHeaderValues.CHUNKED);
                if (!keepAlive) head.headers().set(HttpHeaderNames.CONNECTION, HttpHeaderValues.CLOSE);
            } else {
                head.headers().set(HttpHeaderNames.CONNECTION, HttpHeaderValues.CLOSE);
            }
            channel.write(head);
            ByteBuf out = channel.alloc().buffer();
            for (Choice c : choices) {
                if (api == Api.CHAT) {
                    sse(out, OpenAiFormat.chatChunk(envelope,
                            List.of(OpenAiFormat.chatChunkChoice(c.index, "assistant", "", null, null)), includeUsage));
                } else if (c.echo != null) {
                    c.text.append(c.echo);
                    sse(out, OpenAiFormat.textChunk(envelope,
                            List.of(OpenAiFormat.textChoice(c.index, c.echo, null, null)), includeUsage));
                }
            }
            channel.writeAndFlush(new DefaultHttpContent(out));
        } else {
            for (Choice c : choices) if (c.echo != null) c.text.append(c.echo);
        }
        drain();
    }

    /** Called by the handler when the channel can take more output. */
    void writable() {
        if (began && !ended) drain();
    }

    private void drain() {
        drainScheduled.set(false);
        if (!began || ended) return;
        if (stream && !channel.isWritable()) return;
        List<Event> batch = new ArrayList<>();
        for (Event e; (e = events.poll()) != null; ) batch.add(e);
        if (batch.isEmpty()) return;
        if (stream) {
            streamEvents(batch);
        } else {
            for (Event e : batch) {
                if (ended) return;
                apply(e);
            }
            if (!ended && unfinished == 0) respondWhole();
        }
    }

    /** Folds one event into its choice; returns the text and logprobs it added. */
    private void apply(Event e) {
        Choice c = e.choice();
        if (c.done) return;
        if (e.error() != null) {
            fail(e.error());
            return;
        }
        if (e.token() != null) {
            c.text.append(e.token().text());
            if (e.token().logprob() != null) c.logprobs.add(e.token().logprob());
            if (e.token().isLast()) finish(c, e.token().result());
        } else {
            finish(c, e.result());
        }
    }

    private void finish(Choice c, GenerationResult result) {
        c.result = result;
        c.done = true;
        unfinished--;
    }

    private void streamEvents(List<Event> batch) {
        ByteBuf out = channel.alloc().buffer();
        int i = 0;
        while (i < batch.size() && !ended) {
            // Consecutive events of one choice become one chunk.
            Choice c = batch.get(i).choice();
            int textFrom = c.text.length();
            int logprobsFrom = c.logprobs.size();
            boolean wasDone = c.done;
            int j = i;
            for (; j < batch.size() && batch.get(j).choice() == c; j++) {
                apply(batch.get(j));
                if (ended) break;
            }
            i = j;
            if (ended) break;
            String delta = c.text.substring(textFrom);
            List<TokenLogprob> newLogprobs = c.logprobs.subList(logprobsFrom, c.logprobs.size());
            String finish = !wasDone && c.done ? finishReason(c.result) : null;
            if (delta.isEmpty() && newLogprobs.isEmpty() && finish == null) continue;
            sse(out, chunk(c, delta, List.copyOf(newLogprobs), finish));
        }
        if (ended) {
            out.release();
            return;
        }
        if (unfinished == 0) {
            if (includeUsage) {
                String object = api == Api.CHAT ? OpenAiFormat.CHAT_CHUNK_OBJECT : OpenAiFormat.TEXT_OBJECT;
                sse(out, OpenAiFormat.usageChunk(envelope, object, usage()));
            }
            out.writeBytes("data: [DONE]\n\n".getBytes(StandardCharsets.US_ASCII));
            if (out.isReadable()) channel.write(new DefaultHttpContent(out)); else out.release();
            endStream();
        } else if (out.isReadable()) {
            channel.writeAndFlush(new DefaultHttpContent(out));
        } else {
            out.release();
        }
    }

    private ObjectNode chunk(Choice c, String delta, List<TokenLogprob> newLogprobs, String finish) {
        if (api == Api.CHAT) {
            ObjectNode logprobs = wantLogprobs
                    ? OpenAiFormat.chatLogprobs(newLogprobs, server.backend::tokenBytes) : null;
            return OpenAiFormat.chatChunk(envelope, List.of(OpenAiFormat.chatChunkChoice(c.index, null,
                    delta.isEmpty() && finish != null && newLogprobs.isEmpty() ? null : delta, logprobs, finish)), includeUsage);
        }
        ObjectNode logprobs = null;
        if (wantLogprobs) {
            logprobs = OpenAiFormat.completionLogprobs(newLogprobs, c.logprobOffset);
            for (TokenLogprob t : newLogprobs) c.logprobOffset += t.text().length();
        }
        return OpenAiFormat.textChunk(envelope, List.of(OpenAiFormat.textChoice(c.index, delta, logprobs, finish)), includeUsage);
    }

    private void respondWhole() {
        List<ObjectNode> out = new ArrayList<>(choices.size());
        for (Choice c : choices) {
            String finish = finishReason(c.result);
            if (api == Api.CHAT) {
                ObjectNode logprobs = wantLogprobs ? OpenAiFormat.chatLogprobs(c.logprobs, server.backend::tokenBytes) : null;
                out.add(OpenAiFormat.chatChoice(c.index, c.text.toString(), logprobs, finish));
            } else {
                ObjectNode logprobs = wantLogprobs ? OpenAiFormat.completionLogprobs(c.logprobs, 0) : null;
                out.add(OpenAiFormat.textChoice(c.index, c.text.toString(), logprobs, finish));
            }
        }
        ObjectNode body = api == Api.CHAT
                ? OpenAiFormat.chatCompletion(envelope, out, usage())
                : OpenAiFormat.textCompletion(envelope, out, usage());
        ended = true;
        detach();
        ApiHandler.writeResponse(channel, ApiHandler.jsonResponse(HttpResponseStatus.OK, body, version), keepAlive);
        server.metrics.responded(endpoint, 200);
        owner.callEnded(this, keepAlive);
    }

    private void endStream() {
        ended = true;
        detach();
        var last = channel.writeAndFlush(LastHttpContent.EMPTY_LAST_CONTENT);
        boolean keep = keepAlive && version.equals(HttpVersion.HTTP_1_1);
        if (!keep) last.addListener(ChannelFutureListener.CLOSE);
        server.metrics.responded(endpoint, 200);
        owner.callEnded(this, keep);
    }

    /** The engine failed this request: stop the other choices and say so in the response's own format. */
    private void fail(Throwable error) {
        LOG.log(Level.WARNING, "generation " + envelope.id() + " failed", error);
        cancel();
        ended = true;
        detach();
        // The cause stays in the log: it may name the operator's files (a profile's calibration).
        ApiException api = new ApiException(500, "server_error", null, null, "generation failed in the engine; other requests "
                + "were not affected (see the server log for " + envelope.id() + ")");
        if (stream) {
            ByteBuf out = channel.alloc().buffer();
            sse(out, api.toJson());
            out.writeBytes("data: [DONE]\n\n".getBytes(StandardCharsets.US_ASCII));
            channel.write(new DefaultHttpContent(out));
            channel.writeAndFlush(LastHttpContent.EMPTY_LAST_CONTENT).addListener(ChannelFutureListener.CLOSE);
            server.metrics.responded(endpoint, 200);
            owner.callEnded(this, false);
        } else {
            ApiHandler.writeResponse(channel, ApiHandler.errorResponse(api, version), false);
            server.metrics.responded(endpoint, 500);
            owner.callEnded(this, false);
        }
    }

    private void clientGone() {
        if (ended) return;
        cancel();
        ended = true;
        detach();
        server.metrics.cancelledByDisconnect();
        owner.callEnded(this, false);
    }

    /** No longer interested in the channel's fate; the server no longer waits for this call. */
    private void detach() {
        channel.closeFuture().removeListener(onClose);
        server.callEnded(this);
    }

    private ObjectNode usage() {
        int completion = 0;
        for (Choice c : choices) completion += c.result == null ? 0 : c.result.completionTokens();
        return OpenAiFormat.usage(promptTokens, completion);
    }

    private static String finishReason(GenerationResult result) {
        return result == null ? null : result.finishReason() == FinishReason.CANCELLED ? "abort" : result.finishReason().wireName();
    }

    private static void sse(ByteBuf out, ObjectNode json) {
        out.writeBytes("data: ".getBytes(StandardCharsets.US_ASCII));
        out.writeBytes(Json.bytes(json));
        out.writeBytes("\n\n".getBytes(StandardCharsets.US_ASCII));
    }
}
