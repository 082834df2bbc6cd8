package dev.kvserve.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kvserve.http.HttpMetrics.Refusal;
import dev.kvserve.http.openai.ApiException;
import dev.kvserve.http.openai.Json;
import dev.kvserve.http.openai.OpenAiFormat;
import dev.kvserve.scheduler.EngineHealth;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.codec.DecoderException;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.TooLongHttpHeaderException;
import io.netty.handler.codec.http.TooLongHttpLineException;
import io.netty.util.ReferenceCountUtil;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.Locale;
import java.util.concurrent.RejectedExecutionException;
import java.util.function.Function;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Routes one connection's requests: /v1/models, /v1/completions, /v1/chat/completions, /health and
 * /metrics. Requests are answered strictly in order; a pipelined request waits until the one before
 * it has been answered. While {@link #MAX_PIPELINED} wait, the connection stops reading (so a
 * pipelining client is slowed down, not cut off, and memory stays bounded). Generation requests are
 * planned on the server's prep executor and answered by a {@link CompletionCall}; nothing here waits
 * for the engine.
 */
final class ApiHandler extends ChannelInboundHandlerAdapter implements CompletionCall.Owner {

    private static final Logger LOG = Logger.getLogger(ApiHandler.class.getName());
    /** Queued requests at which reading stops; it resumes once half of them are answered. */
    static final int MAX_PIPELINED = 16;

    static final String MODELS = "/v1/models";
    static final String COMPLETIONS = "/v1/completions";
    static final String CHAT = "/v1/chat/completions";
    static final String HEALTH = "/health";
    static final String READY = "/health/ready";
    static final String LIVE = "/health/live";
    static final String METRICS = "/metrics";

    private final ServerState server;
    private final ConnectionGuard guard;
    private final CallPlanner planner;
    private final ArrayDeque<FullHttpRequest> pipelined = new ArrayDeque<>();
    private ChannelHandlerContext ctx;
    private boolean busy;
    /** Inside {@link #pump()}: answers that finish synchronously return to its loop instead of recursing. */
    private boolean pumping;
    /** A request that ends the connection (a refused head) is queued: nothing after it will be answered. */
    private boolean lastQueued;
    /** Close once every queued request is answered. */
    private boolean closeWhenAnswered;
    private CompletionCall current;

    ApiHandler(ServerState server, ConnectionGuard guard) {
        this.server = server;
        this.guard = guard;
        this.planner = new CallPlanner(server);
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) {
        this.ctx = ctx;
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (!(msg instanceof FullHttpRequest request)) {
            ReferenceCountUtil.release(msg);
            return;
        }
        guard.requestComplete();
        if (lastQueued || guard.isClosing()) {
            request.release();
            return;
        }
        if (request.decoderResult().isFailure()) lastQueued = true;
        pipelined.add(request);
        // Back-pressure instead of a cut: the codec may still emit what the current read holds, but
        // no more is read until the queue drains (the socket's buffers then fill and slow the client).
        if (pipelined.size() >= MAX_PIPELINED) ctx.channel().config().setAutoRead(false);
        pump();
    }

    /** Answers queued requests in order while nothing is being answered and the client keeps reading. */
    private void pump() {
        if (pumping) return;
        pumping = true;
        try {
            while (!busy && ctx.channel().isWritable()) {
                FullHttpRequest next = pipelined.poll();
                if (next == null) break;
                handle(next);
            }
        } finally {
            pumping = false;
        }
        if (pipelined.size() <= MAX_PIPELINED / 2 && !ctx.channel().config().isAutoRead() && !guard.isClosing()) {
            ctx.channel().config().setAutoRead(true);
        }
        guard.answering(busy || !pipelined.isEmpty());
        if (closeWhenAnswered && !busy && pipelined.isEmpty() && ctx.channel().isActive()) {
            closeWhenAnswered = false;
            guard.closing();
            // Closes after what is already written has gone out.
            ctx.writeAndFlush(Unpooled.EMPTY_BUFFER).addListener(ChannelFutureListener.CLOSE);
        }
    }

    private void handle(FullHttpRequest request) {
        busy = true;
        try {
            route(request);
        } catch (ApiException e) {
            respond(errorResponse(e, request.protocolVersion()), HttpUtil.isKeepAlive(request), endpointLabel(request.uri()));
        } catch (MethodNotAllowed e) {
            FullHttpResponse response = errorResponse(e.error, request.protocolVersion());
            response.headers().set(HttpHeaderNames.ALLOW, e.allowed.name());
            respond(response, HttpUtil.isKeepAlive(request), endpointLabel(request.uri()));
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "unexpected failure answering " + ApiException.excerpt(request.method() + " " + request.uri()), e);
            respond(errorResponse(internal(e), request.protocolVersion()), false, endpointLabel(request.uri()));
        } finally {
            request.release();
        }
    }

    private void route(FullHttpRequest request) {
        HttpVersion version = request.protocolVersion();
        boolean keepAlive = HttpUtil.isKeepAlive(request);
        if (request.decoderResult().isFailure()) {
            refuseMalformed(request.decoderResult().cause());
            return;
        }
        String path = path(request.uri());
        HttpMethod method = request.method();
        if (server.apiKeys.guards(path)) {
            String problem = server.apiKeys.problem(request.headers().get(HttpHeaderNames.AUTHORIZATION));
            if (problem != null) {
                server.metrics.refused(Refusal.UNAUTHORIZED);
                FullHttpResponse response = errorResponse(new ApiException(401, "invalid_request_error", null,
                        "invalid_api_key", problem), version);
                response.headers().set(HttpHeaderNames.WWW_AUTHENTICATE, "Bearer");
                respond(response, keepAlive, endpointLabel(request.uri()));
                return;
            }
        }
        switch (path) {
            case MODELS -> {
                requireMethod(method, HttpMethod.GET, path);
                respond(jsonResponse(HttpResponseStatus.OK, OpenAiFormat.modelList(modelObject()), version), keepAlive, MODELS);
            }
            case COMPLETIONS, CHAT -> {
                requireMethod(method, HttpMethod.POST, path);
                generate(request, path, version, keepAlive);
            }
            case HEALTH, READY, LIVE -> {
                requireMethod(method, HttpMethod.GET, path);
                health(path, version, keepAlive);
            }
            case METRICS -> {
                requireMethod(method, HttpMethod.GET, path);
                String text = server.metrics.render(server.backend.stats(), server.calls.size());
                FullHttpResponse response = new DefaultFullHttpResponse(version, HttpResponseStatus.OK,
                        Unpooled.wrappedBuffer(text.getBytes(StandardCharsets.UTF_8)));
                response.headers().set(HttpHeaderNames.CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
                respond(response, keepAlive, METRICS);
            }
            default -> {
                if (path.startsWith(MODELS + "/")) {
                    requireMethod(method, HttpMethod.GET, MODELS);
                    String id = path.substring(MODELS.length() + 1);
                    if (!id.equals(server.model.id())) throw ApiException.modelNotFound(id);
                    respond(jsonResponse(HttpResponseStatus.OK, modelObject(), version), keepAlive, MODELS);
                    return;
                }
                throw new ApiException(404, "invalid_request_error", null, "not_found",
                        "Unknown endpoint " + ApiException.excerpt(method + " " + path) + "; this server offers GET /v1/models, "
                                + "POST /v1/completions, POST /v1/chat/completions, GET /health (/health/ready, /health/live) and GET /metrics");
            }
        }
    }

    private void generate(FullHttpRequest request, String path, HttpVersion version, boolean keepAlive) {
        if (server.draining) throw ApiException.overloaded("the server is shutting down");
        String contentType = request.headers().get(HttpHeaderNames.CONTENT_TYPE);
        if (contentType != null && !isJson(contentType)) {
            throw new ApiException(415, "invalid_request_error", null, "unsupported_media_type",
                    "Content-Type must be application/json, got '" + ApiException.excerpt(contentType) + "'");
        }
        byte[] body = ByteBufUtil.getBytes(request.content());
        Function<byte[], CallPlanner.Plan> plan = path.equals(CHAT) ? planner::chat : planner::completion;
        Channel channel = ctx.channel();
        // Counted from here so that a graceful shutdown also waits for requests still being prepared.
        server.preparing();
        try {
            server.prep.execute(() -> {
                try {
                    CompletionCall call;
                    try {
                        CallPlanner.Plan p = plan.apply(body);
                        call = new CompletionCall(p.api(), channel, server, p.envelope(), p.stream(), p.includeUsage(),
                                p.wantLogprobs(), p.promptTokens(), p.choices(), version, keepAlive, path, this);
                    } catch (ApiException e) {
                        ctx.executor().execute(() -> respond(errorResponse(e, version), keepAlive, path));
                        return;
                    } catch (RuntimeException e) {
                        LOG.log(Level.WARNING, "unexpected failure planning " + path, e);
                        ctx.executor().execute(() -> respond(errorResponse(internal(e), version), false, path));
                        return;
                    }
                    ctx.executor().execute(() -> current = call);
                    call.start();
                } finally {
                    server.prepared();
                }
            });
        } catch (RejectedExecutionException e) {
            server.prepared();
            throw ApiException.overloaded("the server is shutting down");
        }
    }

    /**
     * {@code /health} and {@code /health/ready} (readiness: route requests here) answer 200 only
     * while the engine serves and the server is not draining; {@code /health/live} (liveness: keep
     * the process) answers 200 unless the engine has failed for good, so that an orchestrator
     * restarts the process then, and only then. 503 otherwise, as load balancers and Kubernetes
     * probes expect. The body says why; it never carries a failure's message.
     */
    private void health(String path, HttpVersion version, boolean keepAlive) {
        EngineHealth health = server.backend.health();
        String status = switch (health.status()) {
            case SERVING -> server.draining ? "shutting_down" : "ok";
            case RESTARTING -> "restarting";
            case FAILED -> "engine_failed";
            case CLOSED -> "shutting_down";
        };
        boolean ok = path.equals(LIVE)
                ? health.status() != EngineHealth.Status.FAILED && health.status() != EngineHealth.Status.CLOSED
                : status.equals("ok");
        ObjectNode body = Json.MAPPER.createObjectNode();
        body.put("status", status);
        body.put("model", server.model.id());
        body.put("engine_restarts", health.restarts());
        respond(jsonResponse(ok ? HttpResponseStatus.OK : HttpResponseStatus.SERVICE_UNAVAILABLE, body, version), keepAlive, HEALTH);
    }

    @Override
    public void callEnded(CompletionCall call, boolean keepConnection) {
        if (current == call) current = null;
        next(keepConnection);
    }

    /**
     * Answers a request the codec or {@link RequestGuard} could not accept, then ends the connection:
     * after unclear framing, nothing later on it can be trusted to start where it seems to.
     */
    private void refuseMalformed(Throwable cause) {
        RequestGuard.Refused refused = switch (cause) {
            case RequestGuard.Refused r -> r;
            case TooLongHttpHeaderException e -> new RequestGuard.Refused(431, "request_header_fields_too_large",
                    Refusal.HEADERS_TOO_LARGE, "The request's header section is larger than " + HttpServer.MAX_HEADER_BYTES + " bytes");
            case TooLongHttpLineException e -> new RequestGuard.Refused(414, "uri_too_long",
                    Refusal.URI_TOO_LONG, "The request line is longer than " + HttpServer.MAX_REQUEST_LINE_BYTES + " bytes");
            case null -> new RequestGuard.Refused(400, "invalid_framing", Refusal.BAD_FRAMING, "Malformed HTTP request");
            default -> new RequestGuard.Refused(400, "invalid_framing", Refusal.BAD_FRAMING,
                    "Malformed HTTP request: " + ApiException.excerpt(String.valueOf(cause.getMessage())));
        };
        server.metrics.refused(refused.reason);
        server.metrics.responded("other", refused.status);
        busy = false;
        releasePipelined();
        if (!ctx.channel().isActive()) return;
        guard.closeAfter(errorResponse(refused.error(), HttpVersion.HTTP_1_1));
    }

    /** Writes a whole response and moves on to the next request. */
    private void respond(FullHttpResponse response, boolean keepAlive, String endpoint) {
        server.metrics.responded(endpoint, response.status().code());
        if (!ctx.channel().isActive()) {
            response.release();
            next(false);
            return;
        }
        writeResponse(ctx.channel(), response, keepAlive);
        next(keepAlive);
    }

    private void next(boolean keepConnection) {
        busy = false;
        if (!keepConnection) {
            // The connection closes once the answer is written.
            releasePipelined();
            guard.closing();
            guard.answering(false);
            return;
        }
        pump();
    }

    @Override
    public void channelWritabilityChanged(ChannelHandlerContext ctx) throws Exception {
        if (ctx.channel().isWritable()) {
            if (current != null) current.writable();
            else pump();
        }
        super.channelWritabilityChanged(ctx);
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) throws Exception {
        releasePipelined();
        super.channelInactive(ctx);
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        if (cause instanceof DecoderException && ctx.channel().isActive()) {
            // The codec gave up on the input: more than its pipeline depth (128) of unanswered
            // requests arrived in one read, behind a long response. Answer what was read, then close.
            LOG.fine(() -> "closing after the queued requests: " + cause);
            lastQueued = true;
            closeWhenAnswered = true;
            pump();
            return;
        }
        // Resets and broken pipes are clients leaving; anything else is worth a line.
        if (!(cause instanceof IOException)) LOG.log(Level.WARNING, "connection failed", cause);
        ctx.close();
    }

    private void releasePipelined() {
        for (FullHttpRequest r; (r = pipelined.poll()) != null; ) r.release();
    }

    private ObjectNode modelObject() {
        return OpenAiFormat.model(server.model.id(), server.model.created(), "kvserve", server.model.contextLength());
    }

    // ---------------------------------------------------------------- helpers shared with the call

    static void requireMethod(HttpMethod actual, HttpMethod allowed, String path) {
        if (!actual.equals(allowed)) {
            throw new MethodNotAllowed(allowed, "Method " + ApiException.excerpt(actual.name()) + " is not allowed on " + path
                    + "; use " + allowed);
        }
    }

    /** A 405 that also carries the Allow header value. */
    static final class MethodNotAllowed extends RuntimeException {
        final HttpMethod allowed;
        final ApiException error;

        MethodNotAllowed(HttpMethod allowed, String message) {
            super(message, null, false, false);
            this.allowed = allowed;
            this.error = new ApiException(405, "invalid_request_error", null, "method_not_allowed", message);
        }
    }

    static boolean isJson(String contentType) {
        String media = contentType.split(";", 2)[0].trim().toLowerCase(Locale.ROOT);
        return media.equals("application/json") || (media.startsWith("application/") && media.endsWith("+json"));
    }

    static String path(String uri) {
        int q = uri.indexOf('?');
        String path = q >= 0 ? uri.substring(0, q) : uri;
        int hash = path.indexOf('#');
        return hash >= 0 ? path.substring(0, hash) : path;
    }

    /** A bounded label set for metrics: the known endpoints, everything else as "other". */
    static String endpointLabel(String uri) {
        String path = path(uri);
        return switch (path) {
            case MODELS, COMPLETIONS, CHAT, HEALTH, METRICS -> path;
            case READY, LIVE -> HEALTH;
            default -> path.startsWith(MODELS + "/") ? MODELS : "other";
        };
    }

    static ApiException internal(RuntimeException e) {
        return new ApiException(500, "server_error", null, null, "internal error: " + e);
    }

    static FullHttpResponse jsonResponse(HttpResponseStatus status, JsonNode body, HttpVersion version) {
        FullHttpResponse response = new DefaultFullHttpResponse(version, status, Unpooled.wrappedBuffer(Json.bytes(body)));
        response.headers().set(HttpHeaderNames.CONTENT_TYPE, HttpHeaderValues.APPLICATION_JSON);
        return response;
    }

    static FullHttpResponse errorResponse(ApiException e, HttpVersion version) {
        return jsonResponse(HttpResponseStatus.valueOf(e.status()), e.toJson(), version);
    }

    /** Writes with Content-Length and the connection header the client's keep-alive choice calls for. */
    static void writeResponse(Channel channel, FullHttpResponse response, boolean keepAlive) {
        HttpUtil.setContentLength(response, response.content().readableBytes());
        if (keepAlive) {
            if (response.protocolVersion().equals(HttpVersion.HTTP_1_0)) {
                response.headers().set(HttpHeaderNames.CONNECTION, HttpHeaderValues.KEEP_ALIVE);
            }
            channel.writeAndFlush(response);
        } else {
            response.headers().set(HttpHeaderNames.CONNECTION, HttpHeaderValues.CLOSE);
            channel.writeAndFlush(response).addListener(ChannelFutureListener.CLOSE);
        }
    }
}
