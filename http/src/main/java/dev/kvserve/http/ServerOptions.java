package dev.kvserve.http;

import java.time.Duration;

/**
 * How the server listens and protects itself.
 *
 * @param host          address to bind (127.0.0.1 keeps it local)
 * @param port          TCP port; 0 picks a free one
 * @param ioThreads     Netty event-loop threads (they only move bytes; generation runs in the engine)
 * @param maxBodyBytes  larger request bodies get a 413
 * @param shutdownGrace how long shutdown lets in-flight requests finish before cancelling them
 */
public record ServerOptions(String host, int port, int ioThreads, long maxBodyBytes, Duration shutdownGrace) {

    public static final long DEFAULT_MAX_BODY_BYTES = 8L << 20;

    public ServerOptions {
        if (host == null || host.isBlank()) throw new IllegalArgumentException("host must not be blank");
        if (port < 0 || port > 65535) throw new IllegalArgumentException("port must be in [0, 65535], got " + port);
        if (ioThreads < 1) throw new IllegalArgumentException("ioThreads must be >= 1, got " + ioThreads);
        if (maxBodyBytes < 1) throw new IllegalArgumentException("maxBodyBytes must be >= 1, got " + maxBodyBytes);
        if (shutdownGrace == null || shutdownGrace.isNegative()) throw new IllegalArgumentException("shutdownGrace must be >= 0");
    }

    public static ServerOptions defaults() {
        return new ServerOptions("127.0.0.1", 8080, 2, DEFAULT_MAX_BODY_BYTES, Duration.ofSeconds(30));
    }

    public ServerOptions withPort(int newPort) {
        return new ServerOptions(host, newPort, ioThreads, maxBodyBytes, shutdownGrace);
    }

    public ServerOptions withHost(String newHost) {
        return new ServerOptions(newHost, port, ioThreads, maxBodyBytes, shutdownGrace);
    }

    public ServerOptions withMaxBodyBytes(long bytes) {
        return new ServerOptions(host, port, ioThreads, bytes, shutdownGrace);
    }

    public ServerOptions withShutdownGrace(Duration grace) {
        return new ServerOptions(host, port, ioThreads, maxBodyBytes, grace);
    }

    public ServerOptions withIoThreads(int threads) {
        return new ServerOptions(host, port, threads, maxBodyBytes, shutdownGrace);
    }
}
