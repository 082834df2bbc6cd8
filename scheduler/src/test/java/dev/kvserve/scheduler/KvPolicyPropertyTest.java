package dev.kvserve.scheduler;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kvserve.kvcache.quant.CalibrationFile;
import dev.kvserve.runtime.ModelFile;
import dev.kvserve.runtime.grad.ModelCalibrator;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Validation before admission is complete: specs drawn from the policy grammar (every method, edge
 * values, layer indices the model lacks, compositions) are each either refused when the engine
 * checks them ({@link Engine#canonicalKvPolicy}, what every submission runs first) or run a whole
 * generation, alone and beside another request. Nothing valid-looking may fail inside a step.
 */
@Timeout(300)
class KvPolicyPropertyTest {

    private static final int DRAWS = 400;

    @TempDir
    static Path dir;
    private static Engine engine;
    private static String kvq, cq, aqua;

    @BeforeAll
    static void start() throws Exception {
        Path model = EngineModelTest.shared("models", "stories260K.gguf");
        String text = Files.readString(EngineModelTest.shared("data", "tinystories_val.txt")).substring(0, 20_000);
        try (ModelFile file = ModelFile.open(model)) {
            Tokenizer tokenizer = LlamaModel.tokenizerOf(file.metadata());
            List<int[]> seqs = ModelCalibrator.sequences(tokenizer.encode(text, true, false), 128, 4, tokenizer.bos());
            kvq = calibrate(file, seqs, "kvquant", "bits=3,outliers=0.01,fisher=false", "kvq");
            cq = calibrate(file, seqs, "cq", "c=2,bits=2,fisher=false", "cq");
            aqua = calibrate(file, seqs, "aqua", "bits=2", "aqua");
        }
        // A small pool: some drawn policies do not fit beside the other request and wait or preempt.
        engine = Engine.builder().model(model).backend("cpu").threads(2).maxBatch(4).maxTokensPerStep(32)
                .kvBudget(96 * 1024).build();
    }

    private static String calibrate(ModelFile file, List<int[]> seqs, String method, String params, String name) throws Exception {
        Path out = dir.resolve(name + ".cal");
        CalibrationFile.write(out, ModelCalibrator.identity(file),
                ModelCalibrator.calibrate(file, seqs, method, params, (stage, done, total) -> {}));
        return out.toString();
    }

    @AfterAll
    static void stop() {
        if (engine != null) engine.close();
    }

    @Test
    void everyDrawnSpecIsRefusedUpFrontOrRunsAWholeGeneration() {
        Random r = new Random(20261208);
        List<String> failures = new ArrayList<>();
        int refused = 0, ran = 0;
        for (int i = 0; i < DRAWS; i++) {
            String spec = draw(r);
            String canonical;
            try {
                canonical = engine.canonicalKvPolicy(spec);
            } catch (IllegalArgumentException expected) {
                refused++;
                continue;
            }
            try {
                // Beside a plain fp16 request, so that a policy failing in a batched step would show.
                var other = engine.submit(request("The cat sat on the mat and", "fp16", 12), new GenerationListener() {});
                GenerationResult result = engine.generate(request("Once upon a time, in a small village, there lived", canonical,
                        8 + r.nextInt(40)));
                assertThat(result.finishReason()).isIn(FinishReason.LENGTH, FinishReason.STOP);
                assertThat(other.result().join().finishReason()).isEqualTo(FinishReason.LENGTH);
                ran++;
            } catch (Throwable t) {
                failures.add(spec + " -> " + t);
            }
        }
        assertThat(failures).as("specs that passed the check but failed to run").isEmpty();
        assertThat(engine.stats().kvBytesUsed()).isZero();
        // The draw is wide enough to exercise both outcomes.
        assertThat(ran).isGreaterThan(DRAWS / 3);
        assertThat(refused).isGreaterThan(DRAWS / 10);
    }

    private static GenerationRequest request(String prompt, String policy, int maxTokens) {
        return GenerationRequest.builder(prompt).greedy().maxTokens(maxTokens).ignoreEos(true).kvPolicy(policy).build();
    }

    // ---------------------------------------------------------------- the grammar, with edge values

    private String draw(Random r) {
        List<String> parts = new ArrayList<>();
        if (r.nextInt(6) != 0) parts.add(format(r));
        if (r.nextInt(2) == 0) parts.add(eviction(r));
        if (r.nextInt(4) == 0) parts.add(selector(r));
        if (r.nextInt(4) == 0) parts.add(offload(r));
        if (parts.isEmpty()) parts.add("fp32");
        return String.join("+", parts);
    }

    private static <T> T pick(Random r, List<T> values) {
        return values.get(r.nextInt(values.size()));
    }

    private static String layers(Random r) {
        return pick(r, List.of("none", "0", "0;1", "-1", "0;1;-1", "4", "5", "-5", "-6", "99", "2;2"));
    }

    private static String budget(Random r) {
        return pick(r, List.of("1", "2", "3", "8", "16", "17", "64", "1000000", "0.01", "0.25", "0.5", "1", "1.0"));
    }

    private static String count(Random r) {
        return pick(r, List.of("0", "1", "2", "4", "15", "16", "33", "1048576"));
    }

    private String format(Random r) {
        return switch (r.nextInt(9)) {
            case 0 -> "fp16";
            case 1 -> "fp32";
            case 2, 3 -> pick(r, List.of("int8", "int4", "int3")) + ":group=" + pick(r, List.of("head", "1", "2", "3", "4", "5", "8", "16", "64"));
            case 4 -> "kivi:bits=" + pick(r, List.of("2", "4")) + ",group=" + pick(r, List.of("1", "2", "7", "16", "32", "4096"))
                    + ",residual=" + pick(r, List.of("0", "1", "15", "16", "128", "1000000"));
            case 5 -> "kvquant:calib=" + kvq + pick(r, List.of("", ",bits=3", ",bits=4", ",sinks=0", ",sinks=9", ",outliers=0.01", ",qnorm=true"));
            case 6 -> "cq:calib=" + cq + pick(r, List.of("", ",window=0", ",window=1", ",window=64", ",c=4", ",rope=post", ",sinks=2"));
            case 7 -> "aqua:calib=" + aqua + pick(r, List.of("", ",prefix=0", ",prefix=4", ",buffer=1", ",buffer=128", ",bits=3", ",first=fp16"));
            default -> "fp16";
        };
    }

    private String eviction(Random r) {
        return switch (r.nextInt(7)) {
            case 0 -> "sink:sinks=" + count(r) + ",window=" + budget(r);
            case 1 -> "l2:budget=" + budget(r) + ",sinks=" + count(r) + ",skip=" + layers(r);
            case 2 -> "hashevict:budget=" + budget(r) + ",bits=" + pick(r, List.of("1", "8", "16", "64")) + ",score="
                    + pick(r, List.of("current", "accumulated"));
            case 3 -> "d2o:budget=" + budget(r) + ",skip=" + layers(r) + ",merge=" + pick(r, List.of("paper", "code", "none"))
                    + ",alpha=" + pick(r, List.of("0", "0.5", "1"));
            case 4 -> "h2o:budget=" + budget(r) + ",window=" + pick(r, List.of("0", "0.1", "4")) + ",reduce=" + pick(r, List.of("sum", "mean", "max"));
            case 5 -> "snapkv:budget=" + pick(r, List.of("2", "16", "64", "2048")) + ",window=" + pick(r, List.of("1", "8", "32"))
                    + ",kernel=" + pick(r, List.of("1", "5", "1025")) + ",pooling=" + pick(r, List.of("avg", "max"));
            default -> "sink:window=" + budget(r);
        };
    }

    private String selector(Random r) {
        return switch (r.nextInt(2)) {
            case 0 -> "quest:budget=" + budget(r) + ",page=" + pick(r, List.of("1", "3", "16", "4096")) + ",skip=" + layers(r);
            default -> "clusterkv:budget=" + budget(r) + ",clusters=" + pick(r, List.of("1", "4", "400")) + ",iterations="
                    + pick(r, List.of("0", "1", "20")) + ",window=" + pick(r, List.of("1", "16", "320")) + ",window_clusters="
                    + pick(r, List.of("1", "8")) + ",skip=" + layers(r) + ",gqa=" + pick(r, List.of("head", "avg"));
        };
    }

    private String offload(Random r) {
        String ssd = dir.resolve("ssd").toString();
        return "offload:host=" + pick(r, List.of("0", "4KiB", "64KiB", "1MiB")) + (r.nextBoolean() ? ",ssd=" + ssd : "")
                + ",prefetch=" + r.nextBoolean() + (r.nextBoolean() ? ",csd=true" : "");
    }
}
