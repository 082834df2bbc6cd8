package dev.kvserve.http;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;
import picocli.CommandLine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

/** Option parsing of serve / bench serve, sizes, and the benchmark's statistics. */
class CommandsTest {

    @ParameterizedTest
    @CsvSource({"1048576, 1048576", "256MiB, 268435456", "256M, 268435456", "256MB, 256000000", "64k, 65536",
            "1.5GiB, 1610612736", "2 GiB, 2147483648", "100B, 100", "1KB, 1000"})
    void parsesSizes(String text, long bytes) {
        assertThat(ByteSize.parse(text)).isEqualTo(bytes);
    }

    @ParameterizedTest
    @ValueSource(strings = {"", "MiB", "-5", "12 apples", "5iB", "1.2.3G"})
    void refusesNonSizes(String text) {
        assertThatThrownBy(() -> ByteSize.parse(text)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("is not a size");
    }

    @Test
    void formatsSizes() {
        assertThat(ByteSize.format(256L << 20)).isEqualTo("256 MiB");
        assertThat(ByteSize.format(1536L << 20)).isEqualTo("1.5 GiB");
        assertThat(ByteSize.format(100)).isEqualTo("100 B");
    }

    @Test
    void serveOptions() {
        ServeCommand serve = new ServeCommand();
        new CommandLine(serve).parseArgs("--model", "m.gguf", "--host", "0.0.0.0", "--port", "9000", "--kv", "int4:group=8",
                "--kv-budget", "64MiB", "--max-batch", "8", "--threads", "3", "--max-queue", "5");
        assertThat(serve.modelOptions.threads()).isEqualTo(3);
        assertThat(serve.host).isEqualTo("0.0.0.0");
        assertThat(serve.port).isEqualTo(9000);
        assertThat(serve.kv).isEqualTo("int4:group=8");
        assertThat(ByteSize.parse(serve.kvBudget)).isEqualTo(64L << 20);
        assertThat(serve.maxBatch).isEqualTo(8);
        assertThat(serve.maxQueue).isEqualTo(5);

        ServeCommand defaults = new ServeCommand();
        new CommandLine(defaults).parseArgs();
        assertThat(defaults.host).isEqualTo("127.0.0.1");
        assertThat(defaults.port).isEqualTo(8080);
        assertThat(defaults.kv).isEqualTo("fp16");
        assertThat(defaults.kvBudget).isEqualTo("256MiB");
    }

    @Test
    void serveLimitsAndApiKeys() {
        ServeCommand serve = new ServeCommand();
        new CommandLine(serve).parseArgs("--keep-alive-timeout", "5", "--request-timeout", "7", "--max-connections", "9",
                "--api-key", "sk-a,sk-b", "--api-key", "sk-c", "--api-key-all-endpoints");
        ServerOptions options = serve.serverOptions(java.util.Map.of("KVSERVE_API_KEY", "sk-env"));
        assertThat(options.keepAliveTimeout()).isEqualTo(java.time.Duration.ofSeconds(5));
        assertThat(options.requestReadTimeout()).isEqualTo(java.time.Duration.ofSeconds(7));
        assertThat(options.maxConnections()).isEqualTo(9);
        assertThat(options.apiKeys()).containsExactly("sk-a", "sk-b", "sk-c");
        assertThat(options.apiKeyAllEndpoints()).isTrue();
        assertThat(options.toString()).doesNotContain("sk-");

        ServeCommand defaults = new ServeCommand();
        new CommandLine(defaults).parseArgs();
        ServerOptions plain = defaults.serverOptions(java.util.Map.of());
        assertThat(plain.keepAliveTimeout()).isEqualTo(ServerOptions.DEFAULT_KEEP_ALIVE_TIMEOUT).hasSeconds(60);
        assertThat(plain.requestReadTimeout()).isEqualTo(ServerOptions.DEFAULT_REQUEST_READ_TIMEOUT).hasSeconds(30);
        assertThat(plain.maxConnections()).isEqualTo(1024);
        assertThat(plain.apiKeys()).isEmpty();
        assertThat(defaults.serverOptions(java.util.Map.of("KVSERVE_API_KEY", "sk-x, sk-y")).apiKeys()).containsExactly("sk-x", "sk-y");

        ServeCommand lonely = new ServeCommand();
        new CommandLine(lonely).parseArgs("--api-key-all-endpoints");
        assertThatThrownBy(() -> lonely.serverOptions(java.util.Map.of()))
                .hasMessage("--api-key-all-endpoints needs --api-key or $KVSERVE_API_KEY");
        ServeCommand zero = new ServeCommand();
        new CommandLine(zero).parseArgs("--request-timeout", "0");
        assertThatThrownBy(() -> zero.serverOptions(java.util.Map.of())).hasMessage("--request-timeout must be >= 1, got 0");
    }

    @Test
    void benchOptionsAndBadOutput() {
        ServeBenchCommand bench = new ServeBenchCommand();
        CommandLine cli = new CommandLine(bench);
        cli.parseArgs("--url", "http://h:1", "--concurrency", "3", "--requests", "9", "--prompt-len", "10",
                "--gen-len", "4", "--kv", "fp16", "--out", "r.txt");
        assertThat(bench.concurrency).isEqualTo(3);
        assertThat(bench.requests).isEqualTo(9);
        assertThatThrownBy(bench::call).isInstanceOf(IllegalArgumentException.class)
                .hasMessage("--out must end in .json or .csv, got r.txt");
        assertThatThrownBy(() -> new ServeBench.Config(java.net.URI.create("http://h:1"), null, 0, 1, 1, 1, null, 0))
                .hasMessage("--concurrency must be >= 1, got 0");
    }

    @Test
    void percentilesInterpolateLikeNumpy() {
        LatencySummary s = LatencySummary.of(new double[] {4, 1, 3, 2});
        assertThat(s.count()).isEqualTo(4);
        assertThat(s.mean()).isEqualTo(2.5);
        // numpy.percentile([1, 2, 3, 4], [50, 90, 99]) = 2.5, 3.7, 3.97
        assertThat(s.p50()).isCloseTo(2.5, within(1e-12));
        assertThat(s.p90()).isCloseTo(3.7, within(1e-12));
        assertThat(s.p99()).isCloseTo(3.97, within(1e-12));
        assertThat(s.max()).isEqualTo(4);
        assertThat(LatencySummary.of(new double[0]).count()).isZero();
    }
}
