package dev.kvserve.bench.jmh;

import dev.kvserve.kernels.GgmlType;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.Options;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.TimeValue;

/**
 * Runs {@link BandwidthBench} and {@link MatmulBench} and prints weight GB/s per type, shape,
 * thread count and batch, next to the measured streaming bandwidth (the roofline). Both the
 * median and the best sample are shown: on a shared machine the median measures the neighbours
 * as much as the kernels, the best sample what the kernel does when it has the cores.
 *
 * <pre>java --add-modules jdk.incubator.vector -cp bench/target/benchmarks.jar dev.kvserve.bench.jmh.BenchReport [types] [shapes] [batches]</pre>
 * e.g. {@code BenchReport Q4_0,Q8_0 2048x2048 1}; defaults are the benchmark's full parameter set.
 */
public final class BenchReport {
    private BenchReport() {}

    public static void main(String[] args) throws RunnerException {
        OptionsBuilder bw = new OptionsBuilder();
        bw.include(BandwidthBench.class.getSimpleName());
        Collection<RunResult> bandwidth = new Runner(bw.build()).run();
        Map<Integer, Double> roof = new TreeMap<>();
        for (RunResult r : bandwidth) {
            int threads = Integer.parseInt(r.getParams().getParam("threads"));
            // The machine is shared: the best sample is the bandwidth the memory system delivers.
            double ms = r.getPrimaryResult().getStatistics().getMin();
            roof.put(threads, BandwidthBench.BYTES / (ms * 1e-3) / 1e9);
        }

        OptionsBuilder mm = new OptionsBuilder();
        mm.include(MatmulBench.class.getSimpleName());
        // Short runs: the kernels are warmed up in setup, and the machine is shared.
        mm.warmupIterations(2).warmupTime(TimeValue.seconds(1)).measurementIterations(3).measurementTime(TimeValue.seconds(1));
        if (args.length > 0) mm.param("type", args[0].split(","));
        if (args.length > 1) mm.param("shape", args[1].split(","));
        if (args.length > 2) mm.param("batch", args[2].split(","));
        Options options = mm.build();
        Collection<RunResult> results = new Runner(options).run();

        List<String> lines = new ArrayList<>();
        lines.add(String.format(Locale.ROOT, "%-5s %-10s %7s %5s %10s %10s %12s %12s %9s",
                "type", "rows x cols", "threads", "batch", "p50 us", "best us", "p50 GB/s", "best GB/s", "% stream"));
        for (RunResult r : results) {
            GgmlType type = GgmlType.valueOf(r.getParams().getParam("type"));
            String shape = r.getParams().getParam("shape");
            int threads = Integer.parseInt(r.getParams().getParam("threads"));
            int batch = Integer.parseInt(r.getParams().getParam("batch"));
            String[] dims = shape.split("x");
            long bytes = type.bytesFor(Long.parseLong(dims[0]) * Long.parseLong(dims[1]));
            double p50 = r.getPrimaryResult().getStatistics().getPercentile(50);
            double best = r.getPrimaryResult().getStatistics().getMin();
            double gbs50 = bytes / (p50 * 1e-6) / 1e9;
            double gbsBest = bytes / (best * 1e-6) / 1e9;
            Double stream = roof.get(threads);
            lines.add(String.format(Locale.ROOT, "%-5s %-10s %7d %5d %10.1f %10.1f %12.1f %12.1f %8.0f%%",
                    type, shape, threads, batch, p50, best, gbs50, gbsBest,
                    stream == null ? Double.NaN : 100 * gbsBest / stream));
        }
        System.out.println();
        roof.forEach((t, g) -> System.out.printf(Locale.ROOT, "stream read bandwidth, %d thread(s): %.1f GB/s%n", t, g));
        lines.forEach(System.out::println);
    }
}
