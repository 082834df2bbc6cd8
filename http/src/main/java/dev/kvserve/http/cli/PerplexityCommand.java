package dev.kvserve.http.cli;

import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.Backends;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.runtime.eval.Perplexity;
import dev.kvserve.runtime.model.LlamaModel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "perplexity", mixinStandardHelpOptions = true,
        description = {"Perplexity of a text, computed exactly as llama.cpp's llama-perplexity does",
                "(non-overlapping chunks of --ctx tokens, BOS first, the second half of each chunk scored)."})
public final class PerplexityCommand implements Callable<Integer> {

    /** One chunk at a time: the pool only reserves what it uses, so the budget is no constraint here. */
    private static final long UNBOUNDED_KV = 1L << 40;

    @Mixin ModelOptions modelOptions;

    @Option(names = {"-f", "--file"}, required = true, paramLabel = "TEXT", description = "UTF-8 text file.")
    Path file;

    @Option(names = {"-c", "--ctx"}, defaultValue = "512", description = "Chunk length in tokens (default: ${DEFAULT-VALUE}).")
    int ctx;

    @Option(names = "--chunks", defaultValue = "0", description = "Score at most this many chunks (default: all).")
    int chunks;

    @Option(names = "--kv", defaultValue = "fp16", paramLabel = "SPEC",
            description = "KV-cache policy (default: ${DEFAULT-VALUE}, as llama.cpp's default f16 cache).")
    String kv;

    @Override
    public Integer call() throws Exception {
        if (!Files.isRegularFile(file)) throw new IllegalArgumentException("text file " + file + " does not exist");
        KvCachePolicy policy = KvCachePolicy.parse(kv);
        try (Backend backend = Backends.select(modelOptions.backend(), modelOptions.threads());
             LlamaModel model = LlamaModel.load(modelOptions.modelPath(), backend, modelOptions.threads())) {
            String text = Files.readString(file);
            long t0 = System.nanoTime();
            int[] tokens = model.tokenizer().encode(text, true, false);
            System.err.printf("%s: %d tokens in %.2fs; model %s, KV %s%n", file.getFileName(), tokens.length,
                    (System.nanoTime() - t0) / 1e9, model.name(), policy);
            try (KvCacheManager kvm = new KvCacheManager(model.identity(), model.kvGeometry(), UNBOUNDED_KV)) {
                int total = chunks > 0 ? Math.min(chunks, tokens.length / ctx) : tokens.length / ctx;
                long start = System.nanoTime();
                Perplexity.Result r;
                try (ProgressBar bar = new ProgressBar("perplexity", total)) {
                    r = Perplexity.compute(model, tokens, ctx, chunks, () -> kvm.open(policy),
                            (done, all, ppl) -> bar.suffix(String.format("ppl %.4f", ppl)).update(done));
                }
                double secs = (System.nanoTime() - start) / 1e9;
                System.out.printf("Final estimate: PPL = %.4f +/- %.5f%n", r.ppl(), r.error());
                System.err.printf("%d chunks of %d, %d predictions, %.1f tokens/s%n", r.chunks(), ctx, r.predictions(),
                        r.chunks() * (double) ctx / secs);
            }
        }
        return 0;
    }
}
