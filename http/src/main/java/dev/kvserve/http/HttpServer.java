package dev.kvserve.http;

import dev.kvserve.http.openai.ApiException;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.WriteBufferWaterMark;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.handler.codec.http.HttpDecoderConfig;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.concurrent.GlobalEventExecutor;

import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.logging.Logger;

/**
 * The OpenAI-compatible HTTP server over one {@link ServingBackend}. Per connection:
 * {@link ConnectionGuard} (keep-alive and request-read timeouts), Netty's HTTP/1.1 codec (line and
 * header size limits), {@link RequestGuard} (header count, smuggling-prone framing),
 * {@link RequestAggregator} (body size) and {@link ApiHandler}; connections over the limit get a 503.
 *
 * <pre>{@code
 * try (HttpServer server = HttpServer.start(backend, ServerOptions.defaults().withPort(0))) {
 *     System.out.println(server.url());   // http://127.0.0.1:41234
 * }
 * }</pre>
 *
 * The server does not own the backend: close the backend after the server.
 */
public final class HttpServer implements AutoCloseable {

    private static final Logger LOG = Logger.getLogger(HttpServer.class.getName());
    /** Longest request line (method, URI, version); longer gets a 414. nginx's large_client_header_buffers is 8k. */
    static final int MAX_REQUEST_LINE_BYTES = 8192;
    /** Largest header section; larger gets a 431. */
    static final int MAX_HEADER_BYTES = 16384;
    /** Body bytes the codec hands on at a time (the aggregator joins them). */
    private static final int MAX_CHUNK_BYTES = 65536;

    private final ServerState state;
    private final EventLoopGroup acceptor;
    private final EventLoopGroup workers;
    private final ChannelGroup connections = new DefaultChannelGroup("kvserve-http", GlobalEventExecutor.INSTANCE);
    private final Channel listener;
    private final ExecutorService prep;
    private boolean stopped;

    private HttpServer(ServingBackend backend, ServerOptions options) throws InterruptedException {
        this.prep = Executors.newThreadPerTaskExecutor(Thread.ofVirtual().name("kvserve-http-prep-", 0).factory());
        this.state = new ServerState(backend, options, prep);
        this.acceptor = new MultiThreadIoEventLoopGroup(1, NioIoHandler.newFactory());
        this.workers = new MultiThreadIoEventLoopGroup(options.ioThreads(), NioIoHandler.newFactory());
        try {
            ServerBootstrap bootstrap = new ServerBootstrap()
                    .group(acceptor, workers)
                    .channel(NioServerSocketChannel.class)
                    .option(ChannelOption.SO_BACKLOG, 1024)
                    .childOption(ChannelOption.TCP_NODELAY, true)
                    // Streams stop writing above 256 KiB queued for a client and resume below 64 KiB.
                    .childOption(ChannelOption.WRITE_BUFFER_WATER_MARK, new WriteBufferWaterMark(64 << 10, 256 << 10))
                    .childHandler(new ChannelInitializer<SocketChannel>() {
                        @Override
                        protected void initChannel(SocketChannel ch) {
                            connections.add(ch);
                            int open = state.connections.incrementAndGet();
                            ch.closeFuture().addListener(f -> state.connections.decrementAndGet());
                            if (open > options.maxConnections()) {
                                ch.pipeline().addLast("codec", new HttpServerCodec(codecConfig()));
                                ch.pipeline().addLast("refuse", new RefuseConnection(state.metrics, options.maxConnections()));
                                return;
                            }
                            ConnectionGuard guard = new ConnectionGuard(options, state.metrics);
                            ch.pipeline().addLast("guard", guard);
                            ch.pipeline().addLast("codec", new HttpServerCodec(codecConfig()));
                            ch.pipeline().addLast("checks", new RequestGuard());
                            ch.pipeline().addLast("body", new RequestAggregator(options.maxBodyBytes(), state.metrics, guard));
                            ch.pipeline().addLast("api", new ApiHandler(state, guard));
                        }
                    });
            this.listener = bootstrap.bind(options.host(), options.port()).sync().channel();
        } catch (RuntimeException | InterruptedException e) {
            shutdownGroups();
            throw e;
        }
    }

    /**
     * The codec as RFC 9112 asks of a server: Transfer-Encoding beside Content-Length, or a final
     * coding other than chunked, is a failed request (not silently reinterpreted), and so are
     * repeated Content-Length values; see also {@link RequestGuard}. Netty's pipeline depth (128
     * unanswered requests) stays: {@link ApiHandler} stops reading long before, except within one read.
     */
    private static HttpDecoderConfig codecConfig() {
        return new HttpDecoderConfig()
                .setMaxInitialLineLength(MAX_REQUEST_LINE_BYTES)
                .setMaxHeaderSize(MAX_HEADER_BYTES)
                .setMaxChunkSize(MAX_CHUNK_BYTES)
                .setAllowDuplicateContentLengths(false)
                .setUseRfc9112TransferEncoding(true);
    }

    /** Answers a connection over the limit with a 503 before it can send anything, and closes it. */
    private static final class RefuseConnection extends ChannelInboundHandlerAdapter {
        private final HttpMetrics metrics;
        private final int limit;

        RefuseConnection(HttpMetrics metrics, int limit) {
            this.metrics = metrics;
            this.limit = limit;
        }

        @Override
        public void channelActive(ChannelHandlerContext ctx) {
            metrics.refused(HttpMetrics.Refusal.CONNECTION_LIMIT);
            metrics.responded("other", 503);
            ApiException error = ApiException.overloaded("The server has " + limit + " connections open, its limit; retry later");
            ConnectionGuard.closeAfter(ctx.channel(), ApiHandler.errorResponse(error, HttpVersion.HTTP_1_1));
        }

        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) {
            ReferenceCountUtil.release(msg);
        }
    }

    /** Binds and starts serving; returns once the port is open. */
    public static HttpServer start(ServingBackend backend, ServerOptions options) throws InterruptedException {
        return new HttpServer(backend, options);
    }

    /** The bound port (useful with port 0). */
    public int port() {
        return ((InetSocketAddress) listener.localAddress()).getPort();
    }

    public String url() {
        String host = state.options.host();
        if (host.contains(":")) host = "[" + host + "]";
        return "http://" + host + ":" + port();
    }

    /** Generation requests being answered now. */
    public int inFlight() {
        return state.calls.size();
    }

    /** Generations cancelled so far because their client disconnected. */
    public long disconnectCancels() {
        return state.metrics.disconnectCancels();
    }

    /**
     * Stops gracefully: no new connections, new requests on open ones get 503, in-flight requests
     * get up to {@code grace} to finish; the rest are cancelled (their streams end with
     * finish_reason "abort") and connections closed. Idempotent.
     */
    public synchronized void shutdown(Duration grace) {
        if (stopped) return;
        stopped = true;
        state.draining = true;
        listener.close().syncUninterruptibly();
        long deadline = System.nanoTime() + grace.toNanos();
        boolean finished = awaitCalls(deadline);
        if (!finished) {
            int left = state.calls.size();
            Logging.line("INFO", "cancelling " + left + " request(s) still running after " + grace.toSeconds() + "s");
            for (CompletionCall call : List.copyOf(state.calls)) call.cancel();
            // Cancelled generations end at the engine's next step; give their last chunks a moment.
            awaitCalls(System.nanoTime() + TimeUnit.SECONDS.toNanos(5));
        }
        connections.close().awaitUninterruptibly(5, TimeUnit.SECONDS);
        shutdownGroups();
    }

    @Override
    public void close() {
        shutdown(state.options.shutdownGrace());
    }

    private boolean awaitCalls(long deadlineNanos) {
        try {
            return state.awaitNoCalls(deadlineNanos);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return state.calls.isEmpty();
        }
    }

    private void shutdownGroups() {
        acceptor.shutdownGracefully(0, 2, TimeUnit.SECONDS);
        workers.shutdownGracefully(0, 2, TimeUnit.SECONDS);
        prep.shutdownNow();
        acceptor.terminationFuture().awaitUninterruptibly(5, TimeUnit.SECONDS);
        workers.terminationFuture().awaitUninterruptibly(5, TimeUnit.SECONDS);
    }
}
