package dev.kvserve.http;

import dev.kvserve.http.HttpMetrics.Refusal;
import dev.kvserve.http.openai.ApiException;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.socket.DuplexChannel;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.concurrent.ScheduledFuture;

import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * First in a connection's pipeline, in front of the HTTP codec, so it sees bytes before they make
 * a request: the connection's two deadlines, and its last words.
 *
 * <ul>
 *   <li><b>Keep-alive</b>: with no request arriving and none being answered, the connection is
 *       closed after the keep-alive timeout.</li>
 *   <li><b>Request read</b>: from a request's first byte, its head and body must be complete within
 *       the request-read timeout, else a 408 and close (slowloris heads, half-sent bodies, endless
 *       chunked bodies). While an earlier response is still being written (a long stream), the
 *       deadline waits: responses are never cut by these timeouts; a client that reads nothing is
 *       left to the write-buffer water marks.</li>
 *   <li><b>Closing</b>: {@link #closeAfter} sends a final response, then half-closes and drops
 *       whatever the client still sends until it closes too (or {@link #LINGER} passes). Closing
 *       with unread bytes would make the kernel send a reset, and the client might never read the
 *       answer.</li>
 * </ul>
 *
 * Everything runs on the channel's event loop: {@link ApiHandler} and {@link RequestAggregator}
 * tell it when a request is complete and when answering starts and ends.
 */
final class ConnectionGuard extends ChannelInboundHandlerAdapter {

    /** How long a closing connection waits for the client to read its answer and close. */
    static final Duration LINGER = Duration.ofSeconds(2);

    private final long keepAliveNanos;
    private final long requestReadNanos;
    private final HttpMetrics metrics;
    private ChannelHandlerContext ctx;
    /** Bytes of a request have arrived; the request is not complete yet. */
    private boolean reading;
    private long readDeadline;
    /** A request is being answered, or waits its turn. */
    private boolean answering;
    /** The connection is ending: no 408 any more, a deadline just closes it. */
    private boolean closing;
    /** {@link #closeAfter} owns the rest of the connection: input is dropped, the linger closes it. */
    private boolean lingering;
    private ScheduledFuture<?> timer;

    ConnectionGuard(ServerOptions options, HttpMetrics metrics) {
        this.keepAliveNanos = options.keepAliveTimeout().toNanos();
        this.requestReadNanos = options.requestReadTimeout().toNanos();
        this.metrics = metrics;
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) {
        this.ctx = ctx;
    }

    @Override
    public void channelActive(ChannelHandlerContext ctx) throws Exception {
        rearm();
        super.channelActive(ctx);
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (lingering) {
            ReferenceCountUtil.release(msg);
            return;
        }
        if (!reading && msg instanceof ByteBuf bytes && bytes.isReadable()) {
            reading = true;
            readDeadline = System.nanoTime() + requestReadNanos;
            rearm();
        }
        ctx.fireChannelRead(msg);
    }

    /**
     * A whole request has been read (or refused). Bytes of a pipelined request that came in the
     * same read are not seen as a new request: if it never completes, the keep-alive timeout
     * closes the connection once the earlier requests are answered.
     */
    void requestComplete() {
        if (!reading) return;
        reading = false;
        rearm();
    }

    /** Whether a request is being answered or queued; while one is, the connection is not idle. */
    void answering(boolean busy) {
        if (answering == busy) return;
        answering = busy;
        // A request half-read behind a response gets its full time once the response is done.
        if (!busy && reading) readDeadline = Math.max(readDeadline, System.nanoTime() + requestReadNanos);
        rearm();
    }

    /** The connection is ending (e.g. a 413 whose body is being drained): deadlines now just close it. */
    void closing() {
        closing = true;
    }

    boolean isClosing() {
        return closing;
    }

    /** Writes a last response ({@code Connection: close}), then closes without resetting. */
    void closeAfter(FullHttpResponse response) {
        closing = true;
        lingering = true;
        cancelTimer();
        Channel channel = ctx.channel();
        // The client may still be sending the rest of a refused request: keep reading, to drop it.
        channel.config().setAutoRead(true);
        closeAfter(channel, response);
    }

    /** {@link #closeAfter(FullHttpResponse)} for a channel without a guard (one refused at once). */
    static void closeAfter(Channel channel, FullHttpResponse response) {
        HttpUtil.setContentLength(response, response.content().readableBytes());
        response.headers().set(HttpHeaderNames.CONNECTION, HttpHeaderValues.CLOSE);
        channel.writeAndFlush(response).addListener((ChannelFuture written) -> {
            if (!written.isSuccess() || !(channel instanceof DuplexChannel duplex)) {
                channel.close();
                return;
            }
            // FIN after the answer; the client's own close (Netty closes on its FIN) or the linger ends it.
            duplex.shutdownOutput();
            channel.eventLoop().schedule(() -> channel.close(), LINGER.toMillis(), TimeUnit.MILLISECONDS);
        });
    }

    private void rearm() {
        cancelTimer();
        if (lingering || !ctx.channel().isActive()) return;
        long now = System.nanoTime();
        if (reading && !answering) {
            timer = ctx.executor().schedule(this::readTimedOut, Math.max(0, readDeadline - now), TimeUnit.NANOSECONDS);
        } else if (!reading && !answering) {
            timer = ctx.executor().schedule(this::idleTimedOut, keepAliveNanos, TimeUnit.NANOSECONDS);
        }
        // Answering: no deadline; the response's end re-arms.
    }

    private void readTimedOut() {
        timer = null;
        if (!ctx.channel().isActive()) return;
        if (closing) {
            ctx.close();
            return;
        }
        metrics.refused(Refusal.REQUEST_TIMEOUT);
        metrics.responded("other", 408);
        ApiException error = new ApiException(408, "invalid_request_error", null, "request_timeout",
                "The request was not received completely within " + seconds(requestReadNanos) + "; closing the connection");
        closeAfter(ApiHandler.errorResponse(error, HttpVersion.HTTP_1_1));
    }

    private void idleTimedOut() {
        timer = null;
        if (!ctx.channel().isActive()) return;
        metrics.refused(Refusal.IDLE_TIMEOUT);
        ctx.close();
    }

    private static String seconds(long nanos) {
        double s = nanos / 1e9;
        return s == Math.rint(s) ? (long) s + " s" : s + " s";
    }

    private void cancelTimer() {
        if (timer != null) {
            timer.cancel(false);
            timer = null;
        }
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) throws Exception {
        cancelTimer();
        super.channelInactive(ctx);
    }

    @Override
    public void handlerRemoved(ChannelHandlerContext ctx) {
        cancelTimer();
    }
}
