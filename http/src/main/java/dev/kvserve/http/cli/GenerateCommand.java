package dev.kvserve.http.cli;

import dev.kvserve.scheduler.Engine;
import dev.kvserve.scheduler.GenerationListener;
import dev.kvserve.scheduler.GenerationRequest;
import dev.kvserve.scheduler.GenerationResult;
import dev.kvserve.scheduler.TokenEvent;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "generate", mixinStandardHelpOptions = true,
        description = {"Generate text from a prompt, streamed to stdout; speed figures go to stderr.",
                "Runs through the same engine as the server, so its output equals the server's for the same request."})
public final class GenerateCommand implements Callable<Integer> {

    @Mixin ModelOptions modelOptions;

    @Option(names = {"-p", "--prompt"}, defaultValue = "Once upon a time", description = "Prompt text (default: \"${DEFAULT-VALUE}\").")
    String prompt;

    @Option(names = {"-n", "--max-tokens"}, defaultValue = "128", description = "Tokens to generate (default: ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--temp", defaultValue = "0.8", description = "Temperature; 0 = greedy (default: ${DEFAULT-VALUE}).")
    float temperature;

    @Option(names = "--top-k", defaultValue = "40", description = "Top-k, 0 = off (default: ${DEFAULT-VALUE}).")
    int topK;

    @Option(names = "--top-p", defaultValue = "0.95", description = "Top-p, 1 = off (default: ${DEFAULT-VALUE}).")
    float topP;

    @Option(names = "--min-p", defaultValue = "0.05", description = "Min-p, 0 = off (default: ${DEFAULT-VALUE}).")
    float minP;

    @Option(names = "--repeat-penalty", defaultValue = "1.0", description = "Repetition penalty, 1 = off (default: ${DEFAULT-VALUE}).")
    float repeatPenalty;

    @Option(names = "--presence-penalty", defaultValue = "0", description = "Presence penalty (default: ${DEFAULT-VALUE}).")
    float presencePenalty;

    @Option(names = "--frequency-penalty", defaultValue = "0", description = "Frequency penalty (default: ${DEFAULT-VALUE}).")
    float frequencyPenalty;

    @Option(names = {"-s", "--seed"}, description = "Sampling seed (default: random).")
    Long seed;

    @Option(names = "--greedy", description = "Greedy decoding (same as --temp 0).")
    boolean greedy;

    @Option(names = "--stop", description = "Stop string; repeatable.")
    List<String> stop = List.of();

    @Option(names = "--ignore-eos", description = "Keep generating past end-of-sequence.")
    boolean ignoreEos;

    @Option(names = "--kv", defaultValue = "fp16", paramLabel = "SPEC", description = "KV-cache policy (default: ${DEFAULT-VALUE}).")
    String kv;

    @Override
    public Integer call() throws Exception {
        if (maxTokens < 0) throw new IllegalArgumentException("--max-tokens must be >= 0, got " + maxTokens);
        GenerationRequest.Builder b = GenerationRequest.builder(prompt).maxTokens(maxTokens)
                .temperature(greedy ? 0f : temperature).topK(topK).topP(topP).minP(minP)
                .repetitionPenalty(repeatPenalty).presencePenalty(presencePenalty).frequencyPenalty(frequencyPenalty)
                .stop(stop).ignoreEos(ignoreEos).kvPolicy(kv);
        if (seed != null) b.seed(seed);
        GenerationRequest request = b.build();
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        try (Engine engine = Engine.builder().model(modelOptions.modelPath()).threads(modelOptions.threads())
                .backend(modelOptions.backend()).kvPolicy(kv).maxBatch(1).build()) {
            long start = System.nanoTime();
            long[] firstToken = {0};
            out.print(prompt);
            GenerationResult r = engine.submit(request, new GenerationListener() {
                @Override
                public void onToken(TokenEvent e) {
                    if (firstToken[0] == 0) firstToken[0] = System.nanoTime();
                    out.print(e.text());
                }
            }).result().join();
            long end = System.nanoTime();
            out.println();
            double prefillSecs = (firstToken[0] == 0 ? end : firstToken[0]) - start;
            prefillSecs /= 1e9;
            double genSecs = (end - (firstToken[0] == 0 ? end : firstToken[0])) / 1e9;
            System.err.printf("%nprompt: %d tokens, %.1f tokens/s (time to first token %.0f ms)%n", r.promptTokens(),
                    r.promptTokens() / Math.max(prefillSecs, 1e-9), prefillSecs * 1e3);
            System.err.printf("generation: %d tokens, %.1f tokens/s, finish reason %s%n", r.completionTokens(),
                    r.completionTokens() > 1 ? (r.completionTokens() - 1) / Math.max(genSecs, 1e-9) : 0.0,
                    r.finishReason().name().toLowerCase(java.util.Locale.ROOT));
        }
        return 0;
    }
}
