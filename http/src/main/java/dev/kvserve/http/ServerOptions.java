package dev.kvserve.http;

import java.time.Duration;
import java.util.List;

/**
 * How the server listens and protects itself.
 *
 * @param host               address to bind (127.0.0.1 keeps it local)
 * @param port               TCP port; 0 picks a free one
 * @param ioThreads          Netty event-loop threads (they only move bytes; generation runs in the engine)
 * @param maxBodyBytes       larger request bodies get a 413
 * @param shutdownGrace      how long shutdown lets in-flight requests finish before cancelling them
 * @param keepAliveTimeout   a connection with no request in progress is closed after this long
 * @param requestReadTimeout a request whose head and body have not fully arrived this long after its
 *                           first byte gets a 408 and the connection is closed
 * @param maxConnections     connections beyond this many get a 503 and are closed
 * @param apiKeys            when not empty, /v1/* requests need {@code Authorization: Bearer <one of these>}
 * @param apiKeyAllEndpoints the keys guard /health and /metrics too
 */
public record ServerOptions(String host, int port, int ioThreads, long maxBodyBytes, Duration shutdownGrace,
                            Duration keepAliveTimeout, Duration requestReadTimeout, int maxConnections,
                            List<String> apiKeys, boolean apiKeyAllEndpoints) {

    public static final long DEFAULT_MAX_BODY_BYTES = 8L << 20;
    /** nginx's keepalive_timeout is 75 s, llama-server's 5 s; a minute keeps idle SDK clients' pools useful. */
    public static final Duration DEFAULT_KEEP_ALIVE_TIMEOUT = Duration.ofSeconds(60);
    /** nginx gives 60 s to the head and 60 s between body reads; 30 s for a whole request is plenty for JSON. */
    public static final Duration DEFAULT_REQUEST_READ_TIMEOUT = Duration.ofSeconds(30);
    public static final int DEFAULT_MAX_CONNECTIONS = 1024;

    public ServerOptions {
        if (host == null || host.isBlank()) throw new IllegalArgumentException("host must not be blank");
        if (port < 0 || port > 65535) throw new IllegalArgumentException("port must be in [0, 65535], got " + port);
        if (ioThreads < 1) throw new IllegalArgumentException("ioThreads must be >= 1, got " + ioThreads);
        if (maxBodyBytes < 1) throw new IllegalArgumentException("maxBodyBytes must be >= 1, got " + maxBodyBytes);
        if (shutdownGrace == null || shutdownGrace.isNegative()) throw new IllegalArgumentException("shutdownGrace must be >= 0");
        if (keepAliveTimeout == null || !keepAliveTimeout.isPositive()) throw new IllegalArgumentException("keepAliveTimeout must be > 0");
        if (requestReadTimeout == null || !requestReadTimeout.isPositive()) throw new IllegalArgumentException("requestReadTimeout must be > 0");
        if (maxConnections < 1) throw new IllegalArgumentException("maxConnections must be >= 1, got " + maxConnections);
        apiKeys = List.copyOf(apiKeys == null ? List.of() : apiKeys);
        for (String key : apiKeys) {
            if (key.isBlank()) throw new IllegalArgumentException("API keys must not be blank");
        }
    }

    /** The options without the limits added later, which keep their defaults. */
    public ServerOptions(String host, int port, int ioThreads, long maxBodyBytes, Duration shutdownGrace) {
        this(host, port, ioThreads, maxBodyBytes, shutdownGrace, DEFAULT_KEEP_ALIVE_TIMEOUT, DEFAULT_REQUEST_READ_TIMEOUT,
                DEFAULT_MAX_CONNECTIONS, List.of(), false);
    }

    public static ServerOptions defaults() {
        return new ServerOptions("127.0.0.1", 8080, 2, DEFAULT_MAX_BODY_BYTES, Duration.ofSeconds(30));
    }

    public ServerOptions withPort(int newPort) {
        return new ServerOptions(host, newPort, ioThreads, maxBodyBytes, shutdownGrace, keepAliveTimeout, requestReadTimeout,
                maxConnections, apiKeys, apiKeyAllEndpoints);
    }

    public ServerOptions withHost(String newHost) {
        return new ServerOptions(newHost, port, ioThreads, maxBodyBytes, shutdownGrace, keepAliveTimeout, requestReadTimeout,
                maxConnections, apiKeys, apiKeyAllEndpoints);
    }

    public ServerOptions withMaxBodyBytes(long bytes) {
        return new ServerOptions(host, port, ioThreads, bytes, shutdownGrace, keepAliveTimeout, requestReadTimeout,
                maxConnections, apiKeys, apiKeyAllEndpoints);
    }

    public ServerOptions withShutdownGrace(Duration grace) {
        return new ServerOptions(host, port, ioThreads, maxBodyBytes, grace, keepAliveTimeout, requestReadTimeout,
                maxConnections, apiKeys, apiKeyAllEndpoints);
    }

    public ServerOptions withIoThreads(int threads) {
        return new ServerOptions(host, port, threads, maxBodyBytes, shutdownGrace, keepAliveTimeout, requestReadTimeout,
                maxConnections, apiKeys, apiKeyAllEndpoints);
    }

    public ServerOptions withTimeouts(Duration keepAlive, Duration requestRead) {
        return new ServerOptions(host, port, ioThreads, maxBodyBytes, shutdownGrace, keepAlive, requestRead,
                maxConnections, apiKeys, apiKeyAllEndpoints);
    }

    public ServerOptions withMaxConnections(int connections) {
        return new ServerOptions(host, port, ioThreads, maxBodyBytes, shutdownGrace, keepAliveTimeout, requestReadTimeout,
                connections, apiKeys, apiKeyAllEndpoints);
    }

    public ServerOptions withApiKeys(List<String> keys, boolean allEndpoints) {
        return new ServerOptions(host, port, ioThreads, maxBodyBytes, shutdownGrace, keepAliveTimeout, requestReadTimeout,
                maxConnections, keys, allEndpoints);
    }

    /** Says how many API keys there are, never what they are: options end up in logs. */
    @Override
    public String toString() {
        return "ServerOptions[host=" + host + ", port=" + port + ", ioThreads=" + ioThreads + ", maxBodyBytes=" + maxBodyBytes
                + ", shutdownGrace=" + shutdownGrace + ", keepAliveTimeout=" + keepAliveTimeout
                + ", requestReadTimeout=" + requestReadTimeout + ", maxConnections=" + maxConnections
                + ", apiKeys=" + apiKeys.size() + " (redacted), apiKeyAllEndpoints=" + apiKeyAllEndpoints + "]";
    }
}
