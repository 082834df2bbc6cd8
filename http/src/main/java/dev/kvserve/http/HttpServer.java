package dev.kvserve.http;

import io.netty.bootstrap.ServerBootstrap;
import io.netty.channel.Channel;
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
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.util.concurrent.GlobalEventExecutor;

import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.logging.Logger;

/**
 * The OpenAI-compatible HTTP server over one {@link ServingBackend}: Netty's HTTP/1.1 codec, a
 * body-size guard, and {@link ApiHandler} per connection.
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
                            ch.pipeline().addLast("codec", new HttpServerCodec(8192, 16384, 65536));
                            ch.pipeline().addLast("body", new RequestAggregator(options.maxBodyBytes(), state.metrics));
                            ch.pipeline().addLast("api", new ApiHandler(state));
                        }
                    });
            this.listener = bootstrap.bind(options.host(), options.port()).sync().channel();
        } catch (RuntimeException | InterruptedException e) {
            shutdownGroups();
            throw e;
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
