package dev.kvserve.bench;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kvserve.http.cli.KvServeCli;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

class CommandsTest {

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

    private static List<String> tableRows(String out) {
        return out.lines().filter(l -> l.startsWith("|")).skip(2).toList();
    }

    @Test
    void theCliFindsBothCommandsThroughTheServiceLoader() {
        CommandLine cli = KvServeCli.commandLine();
        assertThat(cli.getSubcommands()).containsKeys("bench", "kv-eval");
        assertThat(cli.getSubcommands().get("bench").getSubcommands()).containsKey("serve");
        Run help = run("bench", "serve", "--help");
        assertThat(help.code()).isZero();
        assertThat(help.out()).contains("--concurrency");
    }

    @Test
    void benchPrintsALlamaBenchTableAndWritesJson() throws Exception {
        Path json = tmp.resolve("bench.json");
        Run r = run("bench", "-m", Shared.stories260K().toString(), "-p", "16", "-n", "4", "-t", "1",
                "-r", "2", "--warmup", "0", "--kv", "fp16,int8", "-o", json.toString());
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out().lines().findFirst().orElseThrow())
                .startsWith("| model").contains(" size |", " params |", " backend ", " threads |", " kv ", " test |", " t/s |",
                        " weights/token |", " weight GB/s |");
        List<String> rows = tableRows(r.out());
        assertThat(rows).hasSize(4);
        assertThat(rows.get(0)).contains("pp16", "fp16", "CPU", "1.12 MiB", "0.29 M");
        assertThat(rows.get(1)).contains("tg4", "fp16", "1016.00 KiB", "±");
        assertThat(rows.get(3)).contains("tg4", "int8:group=head");
        String text = Files.readString(json);
        assertThat(text).startsWith("[").contains("\"test\": \"pp16\"", "\"test\": \"tg4\"", "\"tps_samples\": [")
                .contains("\"weight_bytes_per_token\": 1040384");
        // every mean is a positive rate
        assertThat(text.lines().filter(l -> l.contains("\"tps_mean\": ")).count()).isEqualTo(4);
        assertThat(text).doesNotContain("\"tps_mean\": 0,").doesNotContain("\"tps_mean\": null");
    }

    @Test
    void kvEvalPrintsOneRowPerPolicyAndWritesCsv() throws Exception {
        Path csv = tmp.resolve("kv.csv");
        Run r = run("kv-eval", "-m", Shared.stories260K().toString(), "-f", Shared.tinyStoriesText().toString(),
                "-t", "1", "--kv", "fp16,sink:sinks=4,window=16", "--kv", "int4", "--ctx", "65", "--max-tokens", "130",
                "-o", csv.toString());
        assertThat(r.code()).as(r.err()).isZero();
        List<String> rows = tableRows(r.out());
        assertThat(rows).hasSize(3);
        assertThat(rows.get(0)).startsWith("| fp16 ").contains(" 640.0 |", "1.00x");
        assertThat(rows.get(1)).startsWith("| fp32+sink:sinks=4,window=16 ");
        assertThat(rows.get(2)).startsWith("| int4:group=head ");
        List<String> lines = Files.readAllLines(csv);
        assertThat(lines).hasSize(4);
        assertThat(lines.get(0)).startsWith("model,file,kv,ctx,prefill,windows,tokens,predictions,ppl,");
        assertThat(lines.get(2)).contains("\"fp32+sink:sinks=4,window=16\"");
    }

    @Test
    void kvEvalNeedleRunsTheRuntimesTaskWithAControlAndAnFp16Reference() throws Exception {
        Path json = tmp.resolve("needle.json");
        Run r = run("kv-eval", "--task", "needle", "-m", Shared.stories260K().toString(), "-t", "1",
                "--kv", "fp16,fp16+sink:sinks=4,window=16", "--len", "120", "--depth", "0.9", "--trials", "3",
                "--answer-tokens", "6", "-o", json.toString());
        assertThat(r.code()).as(r.err()).isZero();
        List<String> rows = tableRows(r.out());
        assertThat(rows).hasSize(2);
        assertThat(rows.get(0)).startsWith("| fp16 ").contains("| 120 |", " 0.9 |", " 1.00x |");
        assertThat(rows.get(1)).startsWith("| fp16+sink:sinks=4,window=16 ");
        String text = Files.readString(json);
        assertThat(text).contains("\"control_accuracy\": ", "\"trials\": 3", "\"cue\": \"i_am\"");
        // the window keeps 4 sinks and 16 recent tokens of a ~130-token sequence: several times smaller
        double sinkRatio = Double.parseDouble(text.lines().filter(l -> l.contains("fp16+sink"))
                .map(l -> l.replaceAll(".*\"ratio_vs_fp16_peak\": ([0-9.]+).*", "$1")).findFirst().orElseThrow());
        assertThat(sinkRatio).isGreaterThan(2.5);
    }

    @Test
    void badInputIsOneLineNotAStackTrace() {
        Run r = run("kv-eval", "-m", Shared.stories260K().toString(), "-f", Shared.tinyStoriesText().toString(),
                "--kv", "fp16,window=3x");
        assertThat(r.code()).isEqualTo(2);
        assertThat(r.err()).startsWith("kvserve: ").doesNotContain("Exception");
        Run p = run("kv-eval", "-m", Shared.stories260K().toString(), "--kv", "fp16");
        assertThat(p.code()).isEqualTo(2);
        assertThat(p.err()).contains("--file");
        Run n = run("kv-eval", "--task", "needle", "-m", Shared.stories260K().toString(), "--kv", "fp16", "--cue", "hello");
        assertThat(n.code()).isEqualTo(2);
        assertThat(n.err()).contains("--cue 'hello'", "i_am", "my_name");
        Run b = run("bench", "-m", Shared.stories260K().toString(), "-p", "0", "-n", "0");
        assertThat(b.code()).isEqualTo(2);
        assertThat(b.err()).contains("nothing to measure");
        // refused before any policy runs, not after the whole grid
        Run o = run("kv-eval", "-m", Shared.stories260K().toString(), "-f", Shared.tinyStoriesText().toString(),
                "--kv", "fp16", "-o", "results.txt");
        assertThat(o.code()).isEqualTo(2);
        assertThat(o.err()).contains("results.txt", ".json or .csv").doesNotContain("fp16:");
    }
}
