package dev.kvserve.bench;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kvserve.http.cli.KvServeCli;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** {@code kvserve bench -d D --batch B}: rows, JSON fields and KV accounting at depth on stories260K (no timings). */
class BenchDepthTest {

    @TempDir
    Path tmp;

    private record Run(int code, String out, String err) {}

    private static Run run(String... args) {
        CommandLine cli = KvServeCli.commandLine();
        StringWriter out = new StringWriter(), err = new StringWriter();
        cli.setOut(new PrintWriter(out, true));
        cli.setErr(new PrintWriter(err, true));
        int code = cli.execute(args);
        return new Run(code, out.toString(), err.toString());
    }

    private static String row(List<String> json, String kv, String test) {
        return json.stream().filter(l -> l.contains("\"kv\": \"" + kv) && l.contains("\"test\": \"" + test + "\""))
                .findFirst().orElseThrow(() -> new AssertionError("no row " + kv + " " + test + " in " + json));
    }

    private static double num(String line, String field) {
        Matcher m = Pattern.compile("\"" + field + "\": (null|[-0-9.eE]+)").matcher(line);
        if (!m.find()) throw new AssertionError("no " + field + " in " + line);
        return m.group(1).equals("null") ? Double.NaN : Double.parseDouble(m.group(1));
    }

    @Test
    void depthAndBatchRowsCarryTheDepthTheBatchAndTheKvBytesTheyRead() throws Exception {
        Path json = tmp.resolve("depth.json");
        // fill chunks of 24 tokens: 64 = 24 + 24 + 16
        Run r = run("bench", "-m", Shared.stories260K().toString(), "-p", "8", "-n", "4", "-d", "0,64", "--batch", "1,3",
                "-t", "1", "-r", "1", "--warmup", "0", "--fill-chunk", "24", "--kv", "fp16,int4", "-o", json.toString());
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out().lines().findFirst().orElseThrow()).contains(" kv/token |", " bytes/step |", " GB/s |");
        List<String> table = r.out().lines().filter(l -> l.startsWith("|")).skip(2).toList();
        // 2 policies x 2 depths x (pp, tg) x 2 batch sizes
        assertThat(table).hasSize(16);
        assertThat(table.stream().map(l -> l.split("\\|")[7].trim()).distinct().toList())
                .containsExactly("pp8", "pp8x3", "tg4", "tg4x3", "pp8@d64", "pp8@d64x3", "tg4@d64", "tg4@d64x3");

        List<String> rows = Files.readAllLines(json).stream().filter(l -> l.contains("\"test\"")).toList();
        assertThat(rows).hasSize(16);
        String tg = row(rows, "fp16", "tg4@d64x3");
        assertThat(num(tg, "n_depth")).isEqualTo(64);
        assertThat(num(tg, "n_batch")).isEqualTo(3);
        assertThat(num(tg, "n_gen")).isEqualTo(4);
        assertThat(num(tg, "tps_mean")).isPositive();
        // fp16 stories260K: 640 bytes a token; 64 tokens are 4 whole blocks of 16, 68 take 5
        assertThat(num(tg, "kv_bytes_held")).isEqualTo(64 * 640);
        assertThat(num(tg, "kv_bytes_per_token")).isEqualTo((64 * 640 + 80 * 640) / 2.0);
        double weights = num(tg, "weight_bytes_per_token");
        assertThat(weights).isEqualTo(1040384);
        assertThat(num(tg, "bytes_per_step")).isEqualTo(weights + 3 * (64 * 640 + 80 * 640) / 2.0);
        // aggregate t/s over 3 sequences: a step (3 tokens) reads the bytes once
        assertThat(num(tg, "gb_per_s")).isCloseTo(num(tg, "bytes_per_step") * num(tg, "tps_mean") / 3 / 1e9,
                org.assertj.core.data.Offset.offset(1e-9));
        assertThat(num(row(rows, "fp16", "tg4@d64"), "kv_bytes_per_token")).isEqualTo(num(tg, "kv_bytes_per_token"));

        // the same depth under int4 holds and reads less than fp16
        String tg4 = row(rows, "int4", "tg4@d64x3");
        assertThat(num(tg4, "kv_bytes_held")).isPositive().isLessThan(num(tg, "kv_bytes_held"));
        assertThat(num(tg4, "kv_bytes_per_token")).isPositive().isLessThan(num(tg, "kv_bytes_per_token"));

        // pp at depth: the cache already held 64 tokens; no decode-step bytes
        String pp = row(rows, "fp16", "pp8@d64x3");
        assertThat(num(pp, "n_prompt")).isEqualTo(8);
        assertThat(num(pp, "kv_bytes_held")).isEqualTo(64 * 640);
        assertThat(num(pp, "kv_bytes_per_token")).isNaN();
        assertThat(num(pp, "tps_mean")).isPositive();

        // depth 0 is the old test: an empty cache, the old name
        String tg0 = row(rows, "fp16", "tg4");
        assertThat(num(tg0, "n_depth")).isZero();
        assertThat(num(tg0, "kv_bytes_held")).isZero();
        assertThat(num(tg0, "kv_bytes_per_token")).isEqualTo(16 * 640 / 2.0);
    }

    @Test
    void kiviAndAWindowAtDepthFitTheBudgetTheyAreGiven() {
        Run r = run("bench", "-m", Shared.stories260K().toString(), "-p", "0", "-n", "3", "-d", "100", "--batch", "2",
                "-t", "1", "-r", "1", "--warmup", "0", "--kv", "kivi:bits=2,int8,sink:sinks=4,window=16");
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out().lines().filter(l -> l.contains("tg3@d100x2")).count()).isEqualTo(3);
    }

    @Test
    void aDepthBeyondTheContextOrATooSmallBudgetIsOneClearLine() {
        Run ctx = run("bench", "-m", Shared.stories260K().toString(), "-p", "0", "-n", "16", "-d", "2040", "-t", "1");
        assertThat(ctx.code()).isEqualTo(2);
        assertThat(ctx.err()).contains("tg16@d2040", "2056 positions", "context is 2048").doesNotContain("Exception");
        Run budget = run("bench", "-m", Shared.stories260K().toString(), "-p", "0", "-n", "4", "-d", "128", "--batch", "2",
                "-t", "1", "-r", "1", "--warmup", "0", "--kv-budget", "64KiB");
        assertThat(budget.code()).isEqualTo(2);
        assertThat(budget.err()).contains("KV budget", "64.00 KiB", "fp16", "depth 128", "--kv-budget").doesNotContain("Exception");
        Run batch = run("bench", "-m", Shared.stories260K().toString(), "--batch", "0");
        assertThat(batch.code()).isEqualTo(2);
        assertThat(batch.err()).contains("--batch");
    }
}
