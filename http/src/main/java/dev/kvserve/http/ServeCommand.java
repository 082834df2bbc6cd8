package dev.kvserve.http;

import dev.kvserve.http.cli.ModelOptions;
import dev.kvserve.scheduler.Engine;
import dev.kvserve.scheduler.Preemption;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import dev.kvserve.kvcache.KvCachePolicy;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

/** {@code kvserve serve}: the OpenAI-compatible server over one model. */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = {"Serve the model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions,",
                "/v1/models, /health, /metrics). Stops gracefully on SIGTERM or Ctrl-C."})
public final class ServeCommand implements Callable<Integer> {

    @Mixin ModelOptions modelOptions;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to listen on (default: ${DEFAULT-VALUE}).")
    String host;

    @Option(names = "--port", defaultValue = "8080", description = "TCP port, 0 for any free one (default: ${DEFAULT-VALUE}).")
    int port;

    @Option(names = "--kv", defaultValue = Engine.DEFAULT_KV_POLICY, paramLabel = "SPEC",
            description = "KV-cache policy of requests that name none (a request may pick its own with \"kv_policy\"; default: ${DEFAULT-VALUE}).")
    String kv;

    @Option(names = "--kv-profile", paramLabel = "NAME=SPEC",
            description = {"A named KV policy requests may ask for with \"kv_policy\": \"NAME\" (repeatable), e.g.",
                    "kvq3=kvquant:bits=3,calib=/srv/kvq3.kvq. Profiles may set what clients may not: calibration",
                    "files, offload directories and sizes. Checked against the model at start-up."})
    List<String> kvProfiles = new ArrayList<>();

    @Option(names = "--kv-profiles", paramLabel = "FILE",
            description = "A file of profiles, one NAME=SPEC per line ('#' starts a comment).")
    Path kvProfilesFile;

    @Option(names = "--kv-allow", defaultValue = "all", paramLabel = "METHODS",
            description = {"KV policy methods a request's own kv_policy may use, comma-separated, 'all' or 'none'",
                    "(profiles only); parameters naming files, directories, threads or memory are never a client's",
                    "(default: ${DEFAULT-VALUE})."})
    String kvAllow;

    @Option(names = "--kv-offload", paramLabel = "PARAMS",
            description = {"Lets requests use the offload tier (\"...+offload\") on these shared resources, e.g.",
                    "host=4GiB,ssd=/var/lib/kvserve,ssd_budget=64GiB (the offload tier's operator parameters:",
                    "host, ssd, ssd_budget, resident, prefetch_budget, io_threads, csd_threads, csd_memory)."})
    String kvOffload;

    @Option(names = "--kv-budget", defaultValue = "256MiB", paramLabel = "BYTES",
            description = "Bytes the KV pool may hold, as stored (compressed), e.g. 256MiB, 2GiB (default: ${DEFAULT-VALUE}).")
    String kvBudget;

    @Option(names = "--preemption", defaultValue = "swap", paramLabel = "swap|recompute",
            description = {"A sequence preempted for KV space: swap moves its blocks to its policy's offload tier (host RAM /",
                    "SSD) and back, recomputing only policies without one; recompute always recomputes (default: ${DEFAULT-VALUE})."})
    String preemption;

    @Option(names = "--max-batch", defaultValue = "32", description = "Most sequences decoding at once (default: ${DEFAULT-VALUE}).")
    int maxBatch;

    @Option(names = "--max-queue", defaultValue = "1024",
            description = "Most requests waiting for admission; more get HTTP 503 (default: ${DEFAULT-VALUE}).")
    int maxQueue;

    @Option(names = "--max-tokens-per-step", defaultValue = "512",
            description = "Token budget of one engine step, decode plus prefill chunks (default: ${DEFAULT-VALUE}).")
    int maxTokensPerStep;

    @Option(names = "--io-threads", defaultValue = "2", description = "Network threads (default: ${DEFAULT-VALUE}).")
    int ioThreads;

    @Option(names = "--max-body", defaultValue = "8MiB", paramLabel = "BYTES",
            description = "Largest request body; larger ones get HTTP 413 (default: ${DEFAULT-VALUE}).")
    String maxBody;

    @Option(names = "--shutdown-grace", defaultValue = "30", paramLabel = "SECONDS",
            description = "On shutdown, how long running requests may finish before they are cancelled (default: ${DEFAULT-VALUE}).")
    int shutdownGraceSeconds;

    @Option(names = "--keep-alive-timeout", defaultValue = "60", paramLabel = "SECONDS",
            description = "Close a connection with no request in progress after this long (default: ${DEFAULT-VALUE}).")
    int keepAliveTimeoutSeconds;

    @Option(names = "--request-timeout", defaultValue = "30", paramLabel = "SECONDS",
            description = {"A request's head and body must arrive within this long of its first byte, else HTTP 408",
                    "(responses, streams included, are never cut by it; default: ${DEFAULT-VALUE})."})
    int requestTimeoutSeconds;

    @Option(names = "--max-connections", defaultValue = "1024",
            description = "Most open connections; more get HTTP 503 and are closed (default: ${DEFAULT-VALUE}).")
    int maxConnections;

    @Option(names = "--api-key", split = ",", paramLabel = "KEY",
            description = {"Require 'Authorization: Bearer KEY' on /v1/* (repeatable or a comma list; default: the",
                    "comma list in $" + API_KEY_ENV + ", else no key)."})
    List<String> apiKeys = new ArrayList<>();

    @Option(names = "--api-key-all-endpoints",
            description = "Require the API key on /health and /metrics too.")
    boolean apiKeyAllEndpoints;

    static final String API_KEY_ENV = "KVSERVE_API_KEY";

    /** The keys from the flags, else from the environment variable (keys are kept out of shell history that way). */
    List<String> apiKeys(Map<String, String> env) {
        List<String> keys = new ArrayList<>();
        if (!apiKeys.isEmpty()) {
            keys.addAll(apiKeys);
        } else if (env.get(API_KEY_ENV) != null) {
            keys.addAll(Arrays.asList(env.get(API_KEY_ENV).split(",")));
        }
        keys.replaceAll(String::trim);
        keys.removeIf(String::isEmpty);
        return keys;
    }

    ServerOptions serverOptions(Map<String, String> env) {
        if (shutdownGraceSeconds < 0) throw new IllegalArgumentException("--shutdown-grace must be >= 0, got " + shutdownGraceSeconds);
        if (keepAliveTimeoutSeconds < 1) throw new IllegalArgumentException("--keep-alive-timeout must be >= 1, got " + keepAliveTimeoutSeconds);
        if (requestTimeoutSeconds < 1) throw new IllegalArgumentException("--request-timeout must be >= 1, got " + requestTimeoutSeconds);
        if (maxConnections < 1) throw new IllegalArgumentException("--max-connections must be >= 1, got " + maxConnections);
        List<String> keys = apiKeys(env);
        if (apiKeyAllEndpoints && keys.isEmpty()) {
            throw new IllegalArgumentException("--api-key-all-endpoints needs --api-key or $" + API_KEY_ENV);
        }
        return new ServerOptions(host, port, ioThreads, ByteSize.parse(maxBody), Duration.ofSeconds(shutdownGraceSeconds))
                .withTimeouts(Duration.ofSeconds(keepAliveTimeoutSeconds), Duration.ofSeconds(requestTimeoutSeconds))
                .withMaxConnections(maxConnections)
                .withApiKeys(keys, apiKeyAllEndpoints);
    }

    @Override
    public Integer call() throws Exception {
        Logging.configure();
        if (maxQueue < 0) throw new IllegalArgumentException("--max-queue must be >= 0, got " + maxQueue);
        ServerOptions options = serverOptions(System.getenv());
        long budget = ByteSize.parse(kvBudget);
        Preemption preemptionMode = switch (preemption) {
            case "swap" -> Preemption.SWAP;
            case "recompute" -> Preemption.RECOMPUTE;
            default -> throw new IllegalArgumentException("--preemption must be swap or recompute, got '" + preemption + "'");
        };
        KvPolicyGate gate = gate();
        Path modelPath = modelOptions.modelPath();
        long loadStart = System.nanoTime();
        String defaultPolicy = gate.profiles().getOrDefault(kv, kv);
        Engine engine = Engine.builder().model(modelPath).threads(modelOptions.threads()).backend(modelOptions.backend())
                .kvPolicy(defaultPolicy).kvBudget(budget).preemption(preemptionMode).maxBatch(maxBatch).maxTokensPerStep(maxTokensPerStep).maxWaiting(maxQueue)
                .build();
        try {
            checkAgainstModel(engine, gate);
        } catch (RuntimeException e) {
            engine.close();
            throw e;
        }
        EngineBackend backend = EngineBackend.forFile(engine, modelPath, gate);
        HttpServer server;
        try {
            server = HttpServer.start(backend, options);
        } catch (RuntimeException | InterruptedException e) {
            backend.close();
            throw e;
        }
        ModelCard model = backend.model();
        Logging.line("INFO", String.format("kvserve serving %s at %s/v1  (KV policy %s, KV budget %s, max batch %d, context %d, "
                        + "KV profiles: %s; chat template: %s; API key %s; loaded in %.1fs)",
                model.id(), server.url(), model.defaultKvPolicy(), ByteSize.format(budget), maxBatch, model.contextLength(),
                gate.profiles().isEmpty() ? "none" : String.join(", ", gate.profiles().keySet()),
                model.chatTemplate() == null ? "none, using the plain role transcript" : "from the model",
                options.apiKeys().isEmpty() ? "not required" : "required (" + options.apiKeys().size() + " key(s), "
                        + (options.apiKeyAllEndpoints() ? "every endpoint" : "/v1/*") + ")",
                (System.nanoTime() - loadStart) / 1e9));

        CountDownLatch stopped = new CountDownLatch(1);
        Thread hook = Thread.ofPlatform().name("kvserve-shutdown").unstarted(() -> {
            Logging.line("INFO", "shutting down: no new requests; running ones have " + shutdownGraceSeconds + "s to finish");
            try {
                server.shutdown(options.shutdownGrace());
            } finally {
                backend.close();
                Logging.line("INFO", "stopped");
                stopped.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(hook);
        stopped.await();
        return 0;
    }

    /** The operator's rules for what a request's kv_policy may be, from the flags. */
    KvPolicyGate gate() throws IOException {
        Map<String, String> profiles = new LinkedHashMap<>();
        if (kvProfilesFile != null) {
            List<String> lines = Files.readAllLines(kvProfilesFile);
            for (int i = 0; i < lines.size(); i++) {
                String line = lines.get(i).strip();
                if (line.isEmpty() || line.startsWith("#")) continue;
                addProfile(profiles, line, kvProfilesFile + ":" + (i + 1));
            }
        }
        for (String p : kvProfiles) addProfile(profiles, p, "--kv-profile");
        Set<String> allowed = switch (kvAllow.strip()) {
            case "all" -> null;
            case "none" -> Set.of();
            default -> new LinkedHashSet<>(Arrays.stream(kvAllow.split(",")).map(String::strip).filter(m -> !m.isEmpty()).toList());
        };
        Map<String, String> offload = new LinkedHashMap<>();
        if (kvOffload != null && !kvOffload.isBlank()) {
            KvCachePolicy.parse("fp16+offload:" + kvOffload.strip());   // names and values, with the parser's messages
            for (String kvPair : kvOffload.split(",")) {
                String[] kvp = kvPair.split("=", 2);
                offload.put(kvp[0].strip(), kvp[1].strip());
            }
        }
        return new KvPolicyGate(profiles, allowed, offload);
    }

    private static void addProfile(Map<String, String> profiles, String definition, String where) {
        int eq = definition.indexOf('=');
        if (eq <= 0) throw new IllegalArgumentException(where + ": a KV profile is NAME=SPEC, got '" + definition + "'");
        String name = definition.substring(0, eq).strip();
        KvPolicyGate.checkProfileName(name);
        if (profiles.put(name, definition.substring(eq + 1).strip()) != null) {
            throw new IllegalArgumentException(where + ": KV profile '" + name + "' is defined twice");
        }
    }

    /**
     * Every profile, and the offload tier clients may use, parsed and bound against the loaded model
     * now (calibration files read, offload stores created): a mistake stops the server here with the
     * full message, instead of failing requests later.
     */
    private static void checkAgainstModel(Engine engine, KvPolicyGate gate) {
        for (var p : gate.profiles().entrySet()) {
            try {
                engine.canonicalKvPolicy(p.getValue());
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("KV profile '" + p.getKey() + "': " + e.getMessage(), e);
            }
        }
        if (gate.offloadEnabled()) engine.canonicalKvPolicy("fp16+" + gate.offloadTier());
    }
}
