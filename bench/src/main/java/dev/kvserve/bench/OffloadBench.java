package dev.kvserve.bench;

import dev.kvserve.kvcache.KvBudgetExceededException;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.kvcache.tier.TierStats;
import dev.kvserve.runtime.eval.Perplexity;
import dev.kvserve.runtime.model.LlamaModel;
import dev.kvserve.runtime.model.SequenceChunk;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Long contexts served from a primary KV pool several times smaller than they are, with and without
 * the offload tiers (host RAM, SSD with and without prefetch, emulated computational storage).
 *
 * <p>The workload: {@code sequences} sequences of {@code prompt + gen} text tokens each (sequence i
 * reads the text from token {@code i·(prompt+gen)}, BOS first). Prompts are prefilled in chunks,
 * then every sequence decodes {@code gen} tokens, teacher-forced from the text so that every
 * configuration computes the same thing and its logits can be compared with an all-primary run of
 * the same policy (an unbounded pool): for fp32 they must be equal. The primary budget is the
 * bytes the no-tier policy needs for all sequences at their full length, divided by {@code ratio}.
 *
 * <p>Configurations: {@code recompute} (no tier: the pool admits as many whole sequences as fit, the
 * rest wait and run in later groups, which is what a scheduler with recompute preemption and
 * admission control does with a known workload; none fit = cannot serve), {@code host},
 * {@code ssd} and {@code ssd+prefetch} (full attention), {@code ssd+quest} and
 * {@code ssd+quest+prefetch} (Quest sparse recall, so prefetch predicts the next step's pages from
 * this step's), {@code csd} (SSD blocks attended by the emulated computational-storage worker).
 * All tier configurations run every sequence at once in one batched step.
 */
public final class OffloadBench {

    /**
     * @param sequences  concurrent long sequences
     * @param prompt     prompt tokens of each
     * @param gen        decode tokens of each (teacher-forced)
     * @param ratio      full-length bytes of all sequences ÷ primary budget
     * @param chunk      prefill chunk
     * @param format     storage format of every configuration (fp32 for exact comparisons)
     * @param quest      Quest token budget of the sparse configurations
     * @param host       host RAM budget of the host configuration, bytes
     * @param ssdDir     where SSD tier files go (must be empty or absent; left empty afterwards)
     * @param configs    configuration names to run, in order
     */
    public record Options(int sequences, int prompt, int gen, double ratio, int chunk, String format, int quest, long host,
                          Path ssdDir, List<String> configs) {
        public Options {
            if (sequences < 1) throw new IllegalArgumentException("--sequences must be >= 1, got " + sequences);
            if (prompt < 1) throw new IllegalArgumentException("--prompt must be >= 1, got " + prompt);
            if (gen < 1) throw new IllegalArgumentException("--gen must be >= 1, got " + gen);
            if (!(ratio >= 1)) throw new IllegalArgumentException("--ratio must be >= 1, got " + ratio);
            if (chunk < 1) throw new IllegalArgumentException("--chunk must be >= 1, got " + chunk);
            if (quest < 1) throw new IllegalArgumentException("--quest must be >= 1, got " + quest);
            for (String c : configs) {
                if (!CONFIGS.contains(c)) throw new IllegalArgumentException("unknown configuration '" + c + "'; valid: " + CONFIGS);
            }
            configs = List.copyOf(configs);
        }
    }

    public static final List<String> CONFIGS = List.of("recompute", "host", "ssd", "ssd+prefetch", "ssd+quest",
            "ssd+quest+prefetch", "csd");

    /**
     * @param admits            sequences of full length the configuration can hold at once under the primary budget:
     *                          whole sequences in the pool (recompute); for tiers the smaller of what the lower tiers can
     *                          take beside the pool and what the pool can keep resident (one layer of each sequence plus its
     *                          tail blocks; only tails with csd, whose SSD blocks never come up)
     * @param concurrent        sequences run at once here
     * @param maxAbsLogitDiff   largest |logit − all-primary logit| over every decode step (0 = identical)
     * @param diskClean         the SSD directory was empty after the manager closed
     * @param note              why the configuration could not serve the workload, or empty
     * @param jitNoise          largest |logit difference| between two all-primary runs of the reference itself, the
     *                          first in a cold JVM: the CPU kernels' Vector API float reductions sum in another order
     *                          before C2 compiles them, so logits of identical computations differ by this much
     */
    public record Result(String config, String policy, long primaryBudget, long sequenceBytes, int admits, int concurrent,
                         double prefillSeconds, double decodeSeconds, long decodeTokens, double ppl, double maxAbsLogitDiff,
                         TierStats decodeTiers, TierStats allTiers, boolean diskClean, String note, double jitNoise) {
        Result withJitNoise(double noise) {
            return new Result(config, policy, primaryBudget, sequenceBytes, admits, concurrent, prefillSeconds, decodeSeconds,
                    decodeTokens, ppl, maxAbsLogitDiff, decodeTiers, allTiers, diskClean, note, noise);
        }

        public boolean served() {
            return concurrent > 0;
        }

        public double decodeTokensPerSecond() {
            return decodeTokens / decodeSeconds;
        }

        private double perToken(long bytes) {
            return decodeTokens == 0 ? Double.NaN : (double) bytes / decodeTokens;
        }

        public double bytesUpPerToken() { return perToken(decodeTiers.bytesUp()); }

        public double bytesDownPerToken() { return perToken(decodeTiers.bytesDown()); }

        public double ssdReadPerToken() { return perToken(decodeTiers.ssdBytesRead()); }

        public double csdLinkPerToken() { return perToken(decodeTiers.csdBytesLink()); }

        public double csdInternalPerToken() { return perToken(decodeTiers.csdBytesInternal()); }

        public double stallMillis() { return decodeTiers.stallNanos() / 1e6; }
    }

    /** Told after every forward step. */
    public interface Progress {
        void update(String config, long stepsDone, long stepsTotal);
    }

    private OffloadBench() {}

    /** The policy spec of a configuration. */
    public static String policy(String config, Options o) {
        String ssd = "ssd=" + o.ssdDir().toAbsolutePath();
        String quest = "+quest:budget=" + o.quest() + ",page=16,skip=none";
        return switch (config) {
            case "recompute" -> o.format();
            case "host" -> o.format() + "+offload:host=" + o.host();
            case "ssd" -> o.format() + "+offload:host=0," + ssd + ",prefetch=false";
            case "ssd+prefetch" -> o.format() + "+offload:host=0," + ssd + ",prefetch=true";
            case "ssd+quest" -> o.format() + quest + "+offload:host=0," + ssd + ",prefetch=false";
            case "ssd+quest+prefetch" -> o.format() + quest + "+offload:host=0," + ssd + ",prefetch=true";
            case "csd" -> o.format() + "+offload:host=0," + ssd + ",prefetch=false,csd=true";
            default -> throw new IllegalArgumentException("unknown configuration " + config);
        };
    }

    /** The same policy with every block in the pool: what the configuration's outputs must equal. */
    private static String reference(String config, Options o) {
        return config.contains("quest") ? o.format() + "+quest:budget=" + o.quest() + ",page=16,skip=none" : o.format();
    }

    public static List<Result> run(LlamaModel model, int[] text, Options o, Progress progress) {
        int length = o.prompt() + o.gen();
        if (length > model.config().contextLength()) {
            throw new IllegalArgumentException("--prompt + --gen = " + length + " exceeds the model's context " + model.config().contextLength());
        }
        if ((long) length * o.sequences() > text.length) {
            throw new IllegalArgumentException("the text has " + text.length + " tokens; " + o.sequences() + " sequences of "
                    + length + " need " + (long) length * o.sequences());
        }
        checkEmpty(o.ssdDir());
        int[][] seqTokens = new int[o.sequences()][];
        int bos = model.tokenizer().bos();
        for (int s = 0; s < o.sequences(); s++) {
            seqTokens[s] = Arrays.copyOfRange(text, s * length, (s + 1) * length);
            if (bos >= 0) seqTokens[s][0] = bos;
        }
        long budget;
        try (KvCacheManager probe = new KvCacheManager(model.kvGeometry(), 1L << 40)) {
            budget = (long) (o.sequences() * probe.bytesFor(KvCachePolicy.parse(o.format()), length) / o.ratio());
        }
        // All-primary logits per reference policy and batch size (the CPU kernels' summation order depends on
        // how many rows a step has, so a reference batches the sequences as the configuration does). Each is
        // computed twice and the second kept: the first warms the JIT up, and the Vector API code that runs
        // before C2 compiles it sums in another order (the difference between the two is reported as noise).
        Map<String, float[][][]> references = new LinkedHashMap<>();
        Map<String, Double> noise = new LinkedHashMap<>();
        List<Result> results = new ArrayList<>();
        for (String config : o.configs()) {
            int concurrent = config.equals("recompute") ? recomputeGroup(model, o, budget, config) : o.sequences();
            String ref = reference(config, o);
            String key = ref + "@" + concurrent;
            if (concurrent > 0 && !references.containsKey(key)) {
                float[][][] cold;
                try (KvCacheManager kvm = new KvCacheManager(model.kvGeometry(), 1L << 40)) {
                    cold = serve(model, kvm, KvCachePolicy.parse(ref), seqTokens, o, concurrent, null, null, null).logits;
                }
                try (KvCacheManager kvm = new KvCacheManager(model.kvGeometry(), 1L << 40)) {
                    Served warm = serve(model, kvm, KvCachePolicy.parse(ref), seqTokens, o, concurrent, null, cold, null);
                    references.put(key, warm.logits);
                    noise.put(key, warm.maxDiff);
                }
            }
            Result r = runConfig(model, config, seqTokens, o, budget, references.get(key), progress);
            results.add(r.withJitNoise(noise.getOrDefault(key, Double.NaN)));
        }
        return results;
    }

    private static int recomputeGroup(LlamaModel model, Options o, long budget, String config) {
        try (KvCacheManager kvm = new KvCacheManager(model.kvGeometry(), budget)) {
            return (int) Math.min(o.sequences(), budget / kvm.bytesFor(KvCachePolicy.parse(policy(config, o)), o.prompt() + o.gen()));
        }
    }

    private static Result runConfig(LlamaModel model, String config, int[][] seqTokens, Options o, long budget,
                                    float[][][] reference, Progress progress) {
        KvCachePolicy policy = KvCachePolicy.parse(policy(config, o));
        int length = o.prompt() + o.gen();
        Served served = null;
        long seqBytes;
        int admits;
        TierStats all;
        try (KvCacheManager kvm = new KvCacheManager(model.kvGeometry(), budget)) {
            seqBytes = kvm.bytesFor(policy, length);
            admits = admits(kvm, config, policy, budget, seqBytes, length);
            int concurrent = config.equals("recompute") ? Math.min(admits, o.sequences()) : o.sequences();
            String note = "";
            if (concurrent == 0) {
                note = "a sequence needs " + seqBytes + " B, the pool has " + budget + " B";
            } else {
                try {
                    served = serve(model, kvm, policy, seqTokens, o, concurrent, config, reference, progress);
                } catch (KvBudgetExceededException full) {
                    // a sequence can move only its own blocks down: the pool is too small for every
                    // sequence's blocks being filled plus the layer each reads
                    note = "pool too small for the working set: " + full.getMessage();
                }
            }
            all = kvm.tierStats();
            if (served == null) {
                return new Result(config, policy.toString(), budget, seqBytes, admits, 0, Double.NaN, Double.NaN, 0, Double.NaN,
                        Double.NaN, TierStats.ZERO, all, isEmptyAfter(kvm, o.ssdDir()), note, Double.NaN);
            }
        }
        boolean clean = isEmpty(o.ssdDir());
        return new Result(config, policy.toString(), budget, seqBytes, admits, served.concurrent, served.prefillSeconds,
                served.decodeSeconds, served.decodeTokens, served.ppl, served.maxDiff, served.decodeTiers, all, clean, "", Double.NaN);
    }

    private static int admits(KvCacheManager kvm, String config, KvCachePolicy policy, long budget, long seqBytes, int length) {
        if (config.equals("recompute")) return (int) Math.min(Integer.MAX_VALUE, budget / seqBytes);
        var g = kvm.geometry();
        var values = policy.tier().params().values();
        long lower = (Long) values.get("host") + ("none".equals(values.get("ssd")) ? 0 : (Long) values.get("ssd_budget"));
        long tails = kvm.bytesFor(policy, 1);
        long resident = config.equals("csd") ? tails : (seqBytes + g.layers() - 1) / g.layers() + tails;
        return (int) Math.min(Math.min(Integer.MAX_VALUE, (budget + lower) / seqBytes), budget / resident);
    }

    private record Served(float[][][] logits, int concurrent, double prefillSeconds, double decodeSeconds, long decodeTokens,
                          double ppl, double maxDiff, TierStats decodeTiers) {}

    /** Runs every sequence, {@code concurrent} at a time in lockstep; logits of each decode step kept. */
    private static Served serve(LlamaModel model, KvCacheManager kvm, KvCachePolicy policy, int[][] seqTokens, Options o,
                                int concurrent, String label, float[][][] reference, Progress progress) {
        int vocab = model.config().vocabSize();
        int n = seqTokens.length;
        float[][][] logits = new float[n][o.gen()][];
        Perplexity.Accumulator acc = new Perplexity.Accumulator();
        double maxDiff = 0;
        long prefillNanos = 0, decodeNanos = 0;
        TierStats decodeTiers = TierStats.ZERO;
        int chunksPerPrompt = (o.prompt() + o.chunk() - 1) / o.chunk();
        int groups = (n + concurrent - 1) / concurrent;
        long stepsTotal = (long) groups * (chunksPerPrompt + o.gen()), steps = 0;
        for (int first = 0; first < n; first += concurrent) {
            int count = Math.min(concurrent, n - first);
            List<PagedSequence> seqs = new ArrayList<>();
            try {
                for (int s = 0; s < count; s++) seqs.add(kvm.open(policy));
                long t0 = System.nanoTime();
                for (int from = 0; from < o.prompt(); from += o.chunk()) {
                    int to = Math.min(o.prompt(), from + o.chunk());
                    List<SequenceChunk> chunks = new ArrayList<>();
                    for (int s = 0; s < count; s++) {
                        chunks.add(new SequenceChunk(seqs.get(s), Arrays.copyOfRange(seqTokens[first + s], from, to), false, to == o.prompt()));
                    }
                    model.forward(chunks);
                    if (progress != null) progress.update(label, ++steps, stepsTotal);
                }
                long t1 = System.nanoTime();
                prefillNanos += t1 - t0;
                TierStats before = kvm.tierStats();
                for (int j = 0; j < o.gen(); j++) {
                    int at = o.prompt() + j;
                    List<SequenceChunk> chunks = new ArrayList<>();
                    for (int s = 0; s < count; s++) chunks.add(new SequenceChunk(seqs.get(s), new int[] {seqTokens[first + s][at]}, false));
                    long s0 = System.nanoTime();
                    float[][] out = model.forward(chunks);
                    decodeNanos += System.nanoTime() - s0;
                    for (int s = 0; s < count; s++) {
                        float[] l = out[s];
                        logits[first + s][j] = l;
                        if (at + 1 < seqTokens[first + s].length) acc.add(Perplexity.negativeLogLikelihood(l, 0, vocab, seqTokens[first + s][at + 1]));
                        if (reference != null) {
                            float[] r = reference[first + s][j];
                            for (int v = 0; v < vocab; v++) maxDiff = Math.max(maxDiff, Math.abs(l[v] - r[v]));
                        }
                    }
                    if (progress != null) progress.update(label, ++steps, stepsTotal);
                }
                decodeTiers = decodeTiers.plus(minus(kvm.tierStats(), before));
            } finally {
                for (PagedSequence s : seqs) s.close();
            }
        }
        long decodeTokens = (long) n * o.gen();
        return new Served(logits, concurrent, prefillNanos / 1e9, decodeNanos / 1e9, decodeTokens, acc.ppl(), maxDiff, decodeTiers);
    }

    /** Counter differences (the gauges hostBytes, ssdBytes, ssdFileBytes are taken from {@code after}). */
    private static TierStats minus(TierStats after, TierStats before) {
        return new TierStats(after.hostBytes(), after.ssdBytes(), after.ssdFileBytes(), after.blocksDown() - before.blocksDown(),
                after.bytesDown() - before.bytesDown(), after.blocksUp() - before.blocksUp(), after.bytesUp() - before.bytesUp(),
                after.ssdBytesWritten() - before.ssdBytesWritten(), after.ssdBytesRead() - before.ssdBytesRead(),
                after.prefetchIssued() - before.prefetchIssued(), after.prefetchHits() - before.prefetchHits(),
                after.prefetchLate() - before.prefetchLate(), after.demandReads() - before.demandReads(),
                after.stallNanos() - before.stallNanos(), after.lostBlocks() - before.lostBlocks(),
                after.csdRequests() - before.csdRequests(), after.csdBlocks() - before.csdBlocks(),
                after.csdBytesInternal() - before.csdBytesInternal(), after.csdBytesLink() - before.csdBytesLink());
    }

    private static boolean isEmptyAfter(KvCacheManager kvm, Path dir) {
        kvm.close();
        return isEmpty(dir);
    }

    private static void checkEmpty(Path dir) {
        if (!isEmpty(dir)) throw new IllegalArgumentException("--ssd-dir " + dir + " must be empty (the bench checks it is left empty)");
    }

    private static boolean isEmpty(Path dir) {
        if (!Files.exists(dir)) return true;
        try (var files = Files.list(dir)) {
            return files.findAny().isEmpty();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + dir + ": " + e.getMessage(), e);
        }
    }
}
