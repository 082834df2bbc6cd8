package dev.kvserve.tests;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvserve.http.EngineBackend;
import dev.kvserve.http.HttpServer;
import dev.kvserve.http.KvPolicyGate;
import dev.kvserve.http.ServerOptions;
import dev.kvserve.scheduler.Engine;
import dev.kvserve.scheduler.EngineStats;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.management.ManagementFactory;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A soak of the real server: 64 concurrent streaming clients over mixed KV policies (profiles with
 * eviction and offload, clients' own specs, the shared offload tier), a quarter of them hanging up
 * at a random point, for a fixed time. No 5xx, every finished stream well-formed, and afterwards the
 * KV pool and the offload store empty, threads and descriptors back to where they were and the heap
 * flat. CI runs it for {@code kvserve.soak.seconds} (20 s by default); the figures in
 * {@code bench/RESULTS.md} come from {@code -Dkvserve.soak.seconds=600}.
 */
@Timeout(value = 1200, unit = TimeUnit.SECONDS)
class ServerSoakTest {

    static final ObjectMapper JSON = new ObjectMapper();
    static final int CLIENTS = 64;

    @TempDir
    Path dir;

    @Test
    void sixtyFourStreamsOverMixedPoliciesWithAbortsLeaveNothingBehind() throws Exception {
        long seconds = Long.getLong("kvserve.soak.seconds", 20);
        Path model = SharedFiles.model("stories260K.gguf");
        Path ssd = Files.createDirectories(dir.resolve("ssd"));
        Map<String, String> profiles = new LinkedHashMap<>();
        profiles.put("evict", "int4:group=8+h2o:budget=0.5");
        profiles.put("stream", "int8+sink:sinks=4,window=64");
        profiles.put("spill", "fp16+offload:host=64KiB,ssd=" + ssd);
        KvPolicyGate gate = new KvPolicyGate(profiles, null, Map.of("host", "256KiB", "ssd", ssd.toString()));
        List<String> policies = new ArrayList<>(profiles.keySet());
        policies.addAll(List.of("", "int4:group=8", "kivi:bits=2,residual=16", "fp16+l2:budget=0.5,skip=0", "int8+offload",
                "int4+offload:prefetch=false", "fp16+quest:budget=32,page=8,skip=0"));

        Engine engine = Engine.builder().model(model).backend("cpu").threads(2).maxBatch(32).maxTokensPerStep(128)
                .kvBudget(768L << 10).maxWaiting(4096).build();
        EngineBackend backend = EngineBackend.forFile(engine, model, gate);
        HttpServer server = HttpServer.start(backend, ServerOptions.defaults().withPort(0));
        try {
            // Warm up every policy once (tier stores, bindings, JIT), then take the baseline.
            for (String p : policies) assertThat(request(server.port(), 0, p, 8, -1).status).isEqualTo(200);
            Resources baseline = Resources.now(engine);

            Map<Integer, AtomicLong> statuses = new ConcurrentHashMap<>();
            AtomicLong completed = new AtomicLong(), aborted = new AtomicLong(), malformed = new AtomicLong();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
            List<Resources> samples = new ArrayList<>();
            AtomicLong clientIds = new AtomicLong();
            ExecutorService pool = Executors.newFixedThreadPool(CLIENTS, r -> new Thread(r, "soak-client-" + clientIds.incrementAndGet()));
            List<Future<?>> clients = new ArrayList<>();
            for (int c = 0; c < CLIENTS; c++) {
                Random r = new Random(1000 + c);
                clients.add(pool.submit(() -> {
                    while (System.nanoTime() < deadline) {
                        String policy = policies.get(r.nextInt(policies.size()));
                        boolean abort = r.nextInt(4) == 0;
                        Reply reply = request(server.port(), r.nextInt(1000), policy, 16 + r.nextInt(48), abort ? 1 + r.nextInt(12) : -1);
                        statuses.computeIfAbsent(reply.status, s -> new AtomicLong()).incrementAndGet();
                        if (reply.aborted) aborted.incrementAndGet();
                        else if (reply.status == 200 && reply.done) completed.incrementAndGet();
                        else if (reply.status == 200) malformed.incrementAndGet();
                    }
                    return null;
                }));
            }
            // Resource samples while the load runs, one per tenth of the run.
            for (int i = 1; i <= 10; i++) {
                long at = deadline - TimeUnit.SECONDS.toNanos(seconds) + TimeUnit.SECONDS.toNanos(seconds) * i / 10;
                while (System.nanoTime() < at) {
                    for (Future<?> f : clients) if (f.isDone()) f.get();   // a client that threw fails the test now
                    Thread.sleep(Math.max(1, Math.min(500, (at - System.nanoTime()) / 1_000_000)));   // pacing the sampler, not synchronisation
                }
                samples.add(Resources.now(engine));
            }
            for (Future<?> f : clients) f.get(120, TimeUnit.SECONDS);
            pool.shutdown();
            assertThat(pool.awaitTermination(30, TimeUnit.SECONDS)).isTrue();
            awaitIdle(engine);
            Resources end = Resources.now(engine);

            String report = String.format("soak %ds, %d clients: statuses %s, completed %d, aborted %d; threads %d -> %d (JDK pools included), fds %d -> %d, "
                            + "rss MiB %s, heap after GC MiB %d -> %d, KV bytes %d, tier bytes %d",
                    seconds, CLIENTS, statuses, completed.get(), aborted.get(), baseline.threads, end.threads, baseline.fds, end.fds,
                    samples.stream().map(s -> String.valueOf(s.rssKib >> 10)).toList(), baseline.heapBytes >> 20, end.heapBytes >> 20,
                    end.kvBytes, end.tierBytes);
            System.out.println(report);
            System.out.println("thread kinds: " + baseline.threadKinds + " -> " + end.threadKinds);
            assertThat(statuses.keySet()).as(report).allMatch(s -> s < 500);
            assertThat(malformed.get()).as(report).isZero();
            assertThat(completed.get()).as(report).isPositive();
            assertThat(aborted.get()).as(report).isPositive();
            assertThat(end.kvBytes).as(report).isZero();
            assertThat(end.tierBytes).as(report).isZero();
            for (var kind : end.threadKinds.entrySet()) {
                assertThat(kind.getValue()).as(report + "; threads named " + kind.getKey() + " (baseline " + baseline.threadKinds + ")")
                        .isLessThanOrEqualTo(baseline.threadKinds.getOrDefault(kind.getKey(), 0L));
            }
            assertThat(end.fds).as(report).isLessThanOrEqualTo(baseline.fds + 8);
            assertThat(end.heapBytes).as(report).isLessThan(baseline.heapBytes + (48L << 20));
            // Resident memory is flat over the second half of the run (the first half grows the heap).
            long mid = samples.get(4).rssKib, last = samples.getLast().rssKib;
            assertThat(last).as(report).isLessThan(mid + mid / 4 + (64 << 10));
            // Still serving, and the same greedy answer as before the soak.
            assertThat(request(server.port(), 0, "", 8, -1).status).isEqualTo(200);
        } finally {
            server.close();
            backend.close();
        }
        try (Stream<Path> left = Files.list(ssd)) {
            assertThat(left.toList()).as("SSD tier files left behind").isEmpty();
        }
    }

    private static void awaitIdle(Engine engine) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < deadline) {
            EngineStats s = engine.stats();
            if (s.running() == 0 && s.waiting() == 0 && s.kvBytesUsed() == 0) return;
            Thread.sleep(20);   // polling a condition with a deadline
        }
    }

    record Resources(int threads, long fds, long rssKib, long heapBytes, long kvBytes, long tierBytes, Map<String, Long> threadKinds) {
        /**
         * Live threads by name less trailing digits, without the JDK's own elastic pools (the
         * virtual-thread carriers grow under load and retire after a minute idle): what is left
         * belongs to the server and the engine, and must come back to where it was.
         */
        static Map<String, Long> liveThreadKinds() {
            Map<String, Long> kinds = new java.util.TreeMap<>();
            for (Thread t : Thread.getAllStackTraces().keySet()) {
                // the clients' own threads may still be exiting after their pool terminated
                if (!t.isAlive() || t.getName().startsWith("ForkJoinPool") || t.getName().startsWith("soak-client")) continue;
                kinds.merge(t.getName().replaceAll("[-#]?\\d+$", ""), 1L, Long::sum);
            }
            return kinds;
        }

        static Resources now(Engine engine) throws Exception {
            System.gc();
            var heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage();
            long fds;
            try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
                fds = s.count();
            }
            long rss = Files.readAllLines(Path.of("/proc/self/status")).stream().filter(l -> l.startsWith("VmRSS:"))
                    .mapToLong(l -> Long.parseLong(l.replaceAll("[^0-9]", ""))).findFirst().orElse(0);
            EngineStats stats = engine.stats();
            long tier = stats.kvBytesByTier().entrySet().stream().filter(e -> !e.getKey().equals("primary"))
                    .mapToLong(Map.Entry::getValue).sum();
            return new Resources(ManagementFactory.getThreadMXBean().getThreadCount(), fds, rss, heap.getUsed(),
                    stats.kvBytesUsed(), tier, liveThreadKinds());
        }
    }

    record Reply(int status, boolean done, boolean aborted) {}

    /** One streamed completion over a raw socket; with {@code abortAfter} >= 0 the client hangs up after that many frames. */
    static Reply request(int port, int promptSeed, String policy, int maxTokens, int abortAfter) throws Exception {
        String prompt = ServerEndToEndTest.prompt(promptSeed);
        String json = "{\"prompt\": " + JSON.valueToTree(prompt) + ", \"max_tokens\": " + maxTokens
                + ", \"temperature\": 0, \"ignore_eos\": true, \"stream\": true"
                + (policy.isEmpty() ? "" : ", \"kv_policy\": " + JSON.valueToTree(policy)) + "}";
        byte[] body = json.getBytes(StandardCharsets.UTF_8);
        try (Socket socket = new Socket("127.0.0.1", port)) {
            socket.setSoTimeout(300_000);
            OutputStream out = socket.getOutputStream();
            out.write(("POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + "Content-Length: " + body.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
            out.write(body);
            out.flush();
            InputStream in = socket.getInputStream();
            ByteArrayOutputStream seen = new ByteArrayOutputStream();
            byte[] buf = new byte[8192];
            for (int n; (n = in.read(buf)) > 0; ) {
                seen.write(buf, 0, n);
                String text = seen.toString(StandardCharsets.UTF_8);
                if (abortAfter >= 0 && text.split("data: \\{", -1).length > abortAfter) {
                    return new Reply(status(text), false, true);
                }
            }
            String text = seen.toString(StandardCharsets.UTF_8);
            // chunked framing around the events: the stream's last event is [DONE]
            return new Reply(status(text), text.contains("data: [DONE]\n\n"), false);
        }
    }

    private static int status(String response) {
        if (!response.startsWith("HTTP/1.1 ")) return -1;
        return Integer.parseInt(response.substring(9, 12));
    }
}
