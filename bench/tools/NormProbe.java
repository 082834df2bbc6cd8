import dev.kvserve.bench.KvEval;
import dev.kvserve.kernels.Backend;
import dev.kvserve.kernels.Backends;
import dev.kvserve.kvcache.*;
import dev.kvserve.kvcache.evict.*;
import dev.kvserve.kvcache.policy.*;
import dev.kvserve.runtime.model.LlamaModel;
import java.nio.file.*;
import java.util.*;

/**
 * Diagnostic for issue #7: does a low key L2 norm predict high attention on this model, as the L2-norm
 * eviction paper (Devoto et al. 2024) observes on Llama? Runs the text token by token (windows of 512,
 * kv-eval's decode path) with a probe "eviction rule" that evicts nothing but records every key's norm
 * and the attention (mean over the GQA group) each token receives from every later query. Per layer it
 * prints the Spearman correlation between -norm and attention per later query (positive = the paper's
 * premise holds), where the BOS key's norm ranks among the window's keys, BOS's share of all attention,
 * and how much of the 25% lowest-norm keys (what l2 at budget 0.25 would keep) falls in the 25% most
 * attended (0.25 if unrelated).
 *
 * Not part of the build. Run against the packaged jar:
 *   javac --add-modules jdk.incubator.vector -cp dist/target/kvserve.jar -d /tmp/probe bench/tools/NormProbe.java
 *   java --add-modules jdk.incubator.vector -cp dist/target/kvserve.jar:/tmp/probe NormProbe MODEL.gguf TEXT.txt 2048
 */
public class NormProbe {
    static final List<State> STATES = new ArrayList<>();

    static final class Policy implements EvictionPolicy {
        final Params params;
        Policy(Params p) { params = p; }
        public Params params() { return params; }
        public EvictionState open(KvGeometry g, int blockTokens) { State s = new State(g); STATES.add(s); return s; }
        public int maxRetainedTokens(int layer, int tokens, int stepTokens) { return tokens + stepTokens; }
    }

    static final class State implements EvictionState {
        final KvGeometry g;
        final Map<Long, double[]> norm = new HashMap<>(), att = new HashMap<>();
        int length;
        State(KvGeometry g) { this.g = g; }
        static long key(int l, int h, int p) { return ((long) l << 40) | ((long) h << 32) | p; }
        public void onAppend(LayerKv kv, KvRows rows) {
            float[] k = rows.keysPostRope();
            for (int r = 0; r < rows.rows(); r++) for (int h = 0; h < rows.kvHeads(); h++) {
                int off = rows.offset(r, h); double s = 0;
                for (int c = 0; c < rows.headDim(); c++) s += (double) k[off + c] * k[off + c];
                norm.put(key(kv.layer(), h, rows.firstPosition() + r), new double[] {Math.sqrt(s)});
            }
            length = Math.max(length, rows.firstPosition() + rows.rows());
        }
        public int attentionWeightsFrom(int layer, int stepStart, int stepTokens, boolean endsPrompt) { return 0; }
        public void afterAttention(LayerKv kv, QueryRows q, AttentionWeights w) {
            for (int h = 0; h < g.kvHeads(); h++) for (int s = 0; s < Math.min(kv.slots(h), w.slots(h)); s++) {
                int p = kv.position(h, s); if (p < 0) continue;
                att.computeIfAbsent(key(kv.layer(), h, p), x -> new double[1])[0] += w.reduce(h, s, AttentionWeights.Reduction.MEAN);
            }
        }
        public EvictionState fork() { return this; }
    }

    static double[] ranks(double[] x) {
        Integer[] o = new Integer[x.length]; for (int i = 0; i < o.length; i++) o[i] = i;
        Arrays.sort(o, Comparator.comparingDouble(i -> x[i]));
        double[] r = new double[x.length]; for (int i = 0; i < o.length; i++) r[o[i]] = i; return r;
    }
    static double pearson(double[] a, double[] b) {
        double ma = Arrays.stream(a).average().orElse(0), mb = Arrays.stream(b).average().orElse(0), sab = 0, saa = 0, sbb = 0;
        for (int i = 0; i < a.length; i++) { sab += (a[i]-ma)*(b[i]-mb); saa += (a[i]-ma)*(a[i]-ma); sbb += (b[i]-mb)*(b[i]-mb); }
        return sab / Math.sqrt(saa * sbb);
    }

    public static void main(String[] args) throws Exception {
        PolicyRegistry.register(new MethodDef("probe", ComponentKind.EVICTION, "norm/attention probe", List.of(), Policy::new));
        Path model = Path.of(args[0]); String text = Files.readString(Path.of(args[1])); int max = Integer.parseInt(args[2]);
        try (Backend b = Backends.select("cpu", 1); LlamaModel m = LlamaModel.load(model, b, 1);
             KvCacheManager kvm = new KvCacheManager(m.kvGeometry(), 1L << 40)) {
            int[] tokens = m.tokenizer().encode(text, true, false);
            KvEval.run(m, kvm, KvCachePolicy.parse("fp32+probe"), tokens, new KvEval.Options(512, 0, max), null);
            KvGeometry g = m.kvGeometry();
            System.out.println("layer | spearman(-norm, mean attention received per later query) | BOS norm percentile | BOS share of attention | overlap of 25% lowest-norm with 25% most-attended | overlap if random");
            for (int l = 0; l < g.layers(); l++) {
                double rho = 0, bosPct = 0, bosShare = 0, overlap = 0; int n = 0;
                for (State s : STATES) for (int h = 0; h < g.kvHeads(); h++) {
                    int len = s.length; if (len < 64) continue;
                    // positions 0..len-2 (the last has no later query); attention per query that could see it
                    int T = len - 1; double[] nn = new double[T], aa = new double[T]; double total = 0;
                    for (int p = 0; p < T; p++) {
                        nn[p] = -s.norm.get(State.key(l, h, p))[0];
                        double[] a = s.att.get(State.key(l, h, p)); double v = a == null ? 0 : a[0];
                        total += v; aa[p] = v / (len - p);
                    }
                    rho += pearson(ranks(nn), ranks(aa));
                    int below = 0; for (int p = 1; p < T; p++) if (-nn[p] < -nn[0]) below++;
                    bosPct += 100.0 * below / (T - 1);
                    double[] a0 = s.att.get(State.key(l, h, 0)); bosShare += (a0 == null ? 0 : a0[0]) / total;
                    int k = T / 4; double[] rn = ranks(nn), ra = ranks(aa); int both = 0;
                    for (int p = 0; p < T; p++) if (rn[p] >= T - k && ra[p] >= T - k) both++;
                    overlap += (double) both / k; n++;
                }
                System.out.printf("%d | %.3f | %.1f | %.3f | %.2f | %.2f%n", l, rho / n, bosPct / n, bosShare / n, overlap / n, 0.25);
            }
        }
    }
}
