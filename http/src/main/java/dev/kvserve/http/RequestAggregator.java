package dev.kvserve.http;

import dev.kvserve.http.openai.ApiException;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.CompositeByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.codec.DecoderResult;
import io.netty.handler.codec.http.DefaultFullHttpRequest;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.EmptyHttpHeaders;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.HttpContent;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpRequest;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.LastHttpContent;
import io.netty.util.ReferenceCountUtil;

/**
 * Joins a request's head and body into one {@link FullHttpRequest}, refusing bodies over the limit
 * with OpenAI's JSON error (413) instead of Netty's empty one. An oversized body that is already on
 * its way is read and dropped before the connection closes: closing with unread bytes makes the
 * kernel reset the connection, and the client would see a reset instead of the 413.
 */
final class RequestAggregator extends ChannelInboundHandlerAdapter {

    private final long maxBodyBytes;
    private final HttpMetrics metrics;
    private final ConnectionGuard guard;
    private HttpRequest head;
    private CompositeByteBuf body;
    private boolean discarding;
    private long discarded;
    /** A client that keeps sending after its 413 is cut off here rather than drained forever. */
    private static final long MAX_DISCARD_BYTES = 64L << 20;

    RequestAggregator(long maxBodyBytes, HttpMetrics metrics, ConnectionGuard guard) {
        this.maxBodyBytes = maxBodyBytes;
        this.metrics = metrics;
        this.guard = guard;
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (msg instanceof HttpRequest request) {
            onHead(ctx, request);
        }
        if (msg instanceof HttpContent content) {
            try {
                onContent(ctx, content);
            } finally {
                content.release();
            }
        } else if (!(msg instanceof HttpRequest)) {
            ReferenceCountUtil.release(msg);
        }
    }

    private void onHead(ChannelHandlerContext ctx, HttpRequest request) {
        releaseBody();
        discarding = false;
        if (request.decoderResult().isFailure()) {
            // Pass it on at once, without its body (the connection ends with the answer): the API
            // handler answers malformed or refused heads in their turn. Their content is dropped below.
            FullHttpRequest full = new DefaultFullHttpRequest(request.protocolVersion(), request.method(), request.uri(),
                    Unpooled.EMPTY_BUFFER, request.headers(), EmptyHttpHeaders.INSTANCE);
            full.setDecoderResult(request.decoderResult());
            ctx.fireChannelRead(full);
            return;
        }
        long declared = HttpUtil.getContentLength(request, -1L);
        if (declared > maxBodyBytes) {
            refuse(ctx, request, declared);
            return;
        }
        if (HttpUtil.is100ContinueExpected(request)) {
            ctx.writeAndFlush(new DefaultFullHttpResponse(HttpVersion.HTTP_1_1, HttpResponseStatus.CONTINUE));
            request.headers().remove(HttpHeaderNames.EXPECT);
        }
        head = request;
        body = ctx.alloc().compositeBuffer();
    }

    private void onContent(ChannelHandlerContext ctx, HttpContent content) {
        if (discarding) {
            discarded += content.content().readableBytes();
            if (content instanceof LastHttpContent || discarded > MAX_DISCARD_BYTES) {
                discarding = false;
                ctx.channel().close();
            }
            return;
        }
        if (head == null) return;
        ByteBuf chunk = content.content();
        if (body.readableBytes() + (long) chunk.readableBytes() > maxBodyBytes) {
            HttpRequest request = head;
            releaseBody();
            refuse(ctx, request, -1);
            if (content instanceof LastHttpContent) {
                discarding = false;
                ctx.channel().close();
            }
            return;
        }
        if (chunk.isReadable()) body.addComponent(true, chunk.retain());
        if (content.decoderResult().isFailure() && !head.decoderResult().isFailure()) {
            // E.g. a bad chunk size line: the body's framing is broken, whatever exception the codec chose.
            Throwable cause = content.decoderResult().cause();
            head.setDecoderResult(DecoderResult.failure(new RequestGuard.Refused(400, "invalid_framing",
                    HttpMetrics.Refusal.BAD_FRAMING, "Malformed request body: "
                    + ApiException.excerpt(cause == null ? "unreadable" : String.valueOf(cause.getMessage())))));
        }
        if (content instanceof LastHttpContent last) {
            FullHttpRequest full = new DefaultFullHttpRequest(head.protocolVersion(), head.method(), head.uri(), body,
                    head.headers(), last.trailingHeaders());
            full.setDecoderResult(head.decoderResult());
            head = null;
            body = null;
            ctx.fireChannelRead(full);
        }
    }

    private void refuse(ChannelHandlerContext ctx, HttpRequest request, long declared) {
        head = null;
        // The connection ends once the body is drained; a body that never ends is cut by the read timeout.
        guard.closing();
        discarding = true;
        discarded = 0;
        ApiException error = new ApiException(413, "invalid_request_error", null, "request_too_large",
                "The request body is too large: " + (declared >= 0 ? declared + " bytes, " : "")
                        + "the limit is " + maxBodyBytes + " bytes");
        var response = ApiHandler.errorResponse(error, request.protocolVersion());
        response.headers().set(HttpHeaderNames.CONNECTION, "close");
        metrics.responded(ApiHandler.endpointLabel(request.uri()), 413);
        if (HttpUtil.is100ContinueExpected(request)) {
            // The client waits for our go-ahead before sending the body: there is nothing to drain.
            discarding = false;
            ctx.writeAndFlush(response).addListener(ChannelFutureListener.CLOSE);
        } else {
            ctx.writeAndFlush(response);
        }
    }

    private void releaseBody() {
        if (body != null) {
            body.release();
            body = null;
        }
        head = null;
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) throws Exception {
        releaseBody();
        super.channelInactive(ctx);
    }

    @Override
    public void handlerRemoved(ChannelHandlerContext ctx) {
        releaseBody();
    }
}
