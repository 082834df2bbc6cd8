package dev.kvserve.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kvserve.http.openai.ApiException;
import dev.kvserve.http.openai.Json;
import dev.kvserve.http.openai.OpenAiFormat;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
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
 * it has been answered. Generation requests are planned on the server's prep executor and answered
 * by a {@link CompletionCall}; nothing here waits for the engine.
 */
final class ApiHandler extends ChannelInboundHandlerAdapter implements CompletionCall.Owner {

    private static final Logger LOG = Logger.getLogger(ApiHandler.class.getName());
    private static final int MAX_PIPELINED = 16;

    static final String MODELS = "/v1/models";
    static final String COMPLETIONS = "/v1/completions";
    static final String CHAT = "/v1/chat/completions";
    static final String HEALTH = "/health";
    static final String METRICS = "/metrics";

    private final ServerState server;
    private final CallPlanner planner;
    private final ArrayDeque<FullHttpRequest> pipelined = new ArrayDeque<>();
    private ChannelHandlerContext ctx;
    private boolean busy;
    private CompletionCall current;

    ApiHandler(ServerState server) {
        this.server = server;
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
        if (busy) {
            if (pipelined.size() >= MAX_PIPELINED) {
                request.release();
                ctx.close();
                return;
            }
            pipelined.add(request);
            return;
        }
        handle(request);
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
            LOG.log(Level.WARNING, "unexpected failure answering " + request.method() + " " + request.uri(), e);
            respond(errorResponse(internal(e), request.protocolVersion()), false, endpointLabel(request.uri()));
        } finally {
            request.release();
        }
    }

    private void route(FullHttpRequest request) {
        HttpVersion version = request.protocolVersion();
        boolean keepAlive = HttpUtil.isKeepAlive(request);
        if (request.decoderResult().isFailure()) {
            Throwable cause = request.decoderResult().cause();
            respond(errorResponse(ApiException.invalid(null, "Malformed HTTP request: "
                    + (cause == null ? "unreadable" : cause.getMessage())), HttpVersion.HTTP_1_1), false, "other");
            return;
        }
        String path = path(request.uri());
        HttpMethod method = request.method();
        switch (path) {
            case MODELS -> {
                requireMethod(method, HttpMethod.GET, path);
                respond(jsonResponse(HttpResponseStatus.OK, OpenAiFormat.modelList(modelObject()), version), keepAlive, MODELS);
            }
            case COMPLETIONS, CHAT -> {
                requireMethod(method, HttpMethod.POST, path);
                generate(request, path, version, keepAlive);
            }
            case HEALTH -> {
                requireMethod(method, HttpMethod.GET, path);
                ObjectNode body = Json.MAPPER.createObjectNode();
                body.put("status", server.draining ? "shutting_down" : "ok");
                body.put("model", server.model.id());
                respond(jsonResponse(server.draining ? HttpResponseStatus.SERVICE_UNAVAILABLE : HttpResponseStatus.OK, body, version),
                        keepAlive, HEALTH);
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
                        "Unknown endpoint " + method + " " + path + "; this server offers GET /v1/models, "
                                + "POST /v1/completions, POST /v1/chat/completions, GET /health and GET /metrics");
            }
        }
    }

    private void generate(FullHttpRequest request, String path, HttpVersion version, boolean keepAlive) {
        if (server.draining) throw ApiException.overloaded("the server is shutting down");
        String contentType = request.headers().get(HttpHeaderNames.CONTENT_TYPE);
        if (contentType != null && !isJson(contentType)) {
            throw new ApiException(415, "invalid_request_error", null, "unsupported_media_type",
                    "Content-Type must be application/json, got '" + contentType + "'");
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

    @Override
    public void callEnded(CompletionCall call, boolean keepConnection) {
        if (current == call) current = null;
        next(keepConnection);
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
            releasePipelined();
            return;
        }
        FullHttpRequest queued = pipelined.poll();
        if (queued != null) handle(queued);
    }

    @Override
    public void channelWritabilityChanged(ChannelHandlerContext ctx) throws Exception {
        if (current != null && ctx.channel().isWritable()) current.writable();
        super.channelWritabilityChanged(ctx);
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) throws Exception {
        releasePipelined();
        super.channelInactive(ctx);
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
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
            throw new MethodNotAllowed(allowed, "Method " + actual + " is not allowed on " + path + "; use " + allowed);
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
