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
 * Diagnostic for issue #7: does HashEvict's premise hold on this model? HashEvict evicts, per decode
 * step, the cached key whose SimHash is farthest (Hamming) from the query's, expecting it to get the
 * least attention. A probe "eviction rule" that evicts nothing records, at every single-token step with
 * at least 32 cached tokens, per query head: the Spearman correlation of the attention weights with
 * cos(q, k) and with minus the 16-bit Hamming distance (Gaussian hyperplanes, as the rule), and where the
 * farthest key (HashEvict's victim, ties to the oldest) ranks in that step's attention (percentile: 0 =
 * least attended, what the rule hopes; 50 = random), next to the same for the largest-norm key (l2's
 * victim). Attention is softmax(q·k) = monotone in |k|·cos, so cos alone misses the key norm.
 *
 * Not part of the build; run like NormProbe:
 *   java --add-modules jdk.incubator.vector -cp dist/target/kvserve.jar:/tmp/probe HashProbe MODEL.gguf TEXT.txt 2048
 */
public class HashProbe {
    static final int BITS = 16;
    static double[][] sums;  // [layer][rhoCos, rhoHam, victimPct, normVictimPct, count]

    static final class Policy implements EvictionPolicy {
        final Params params;
        Policy(Params p) { params = p; }
        public Params params() { return params; }
        public EvictionState open(KvGeometry g, int blockTokens) { return new State(g); }
        public int maxRetainedTokens(int layer, int tokens, int stepTokens) { return tokens + stepTokens; }
    }

    static final class State implements EvictionState {
        final KvGeometry g;
        final Map<Long, float[]> keys = new HashMap<>();
        final float[][] planes;
        State(KvGeometry g) {
            this.g = g;
            planes = new float[g.layers()][BITS * g.headDim()];
            for (int l = 0; l < g.layers(); l++) { Random r = new Random(l); for (int i = 0; i < planes[l].length; i++) planes[l][i] = (float) r.nextGaussian(); }
        }
        static long key(int l, int h, int p) { return ((long) l << 40) | ((long) h << 32) | p; }
        public void onAppend(LayerKv kv, KvRows rows) {
            for (int r = 0; r < rows.rows(); r++) for (int h = 0; h < rows.kvHeads(); h++) {
                int off = rows.offset(r, h);
                keys.put(key(kv.layer(), h, rows.firstPosition() + r), Arrays.copyOfRange(rows.keysPostRope(), off, off + rows.headDim()));
            }
        }
        int code(int layer, float[] x, int off) {
            int d = g.headDim(), c = 0;
            for (int i = 0; i < BITS; i++) { double s = 0; for (int j = 0; j < d; j++) s += planes[layer][i * d + j] * x[off + j]; if (s >= 0) c |= 1 << i; }
            return c;
        }
        public int attentionWeightsFrom(int layer, int stepStart, int stepTokens, boolean endsPrompt) { return 0; }
        public void afterAttention(LayerKv kv, QueryRows q, AttentionWeights w) {
            if (q.rows() != 1) return;
            int l = kv.layer(), d = g.headDim(), group = g.groupSize();
            for (int h = 0; h < g.kvHeads(); h++) {
                int n = Math.min(kv.slots(h), w.slots(h));
                if (n < 32) continue;
                for (int j = 0; j < group; j++) {
                    int qh = h * group + j, qoff = q.offset(0, qh), qc = code(l, q.q(), qoff);
                    double qn = 0; for (int c = 0; c < d; c++) qn += q.q()[qoff + c] * q.q()[qoff + c];
                    double[] a = new double[n], cos = new double[n], ham = new double[n], norm = new double[n];
                    int[] pos = new int[n];
                    for (int s = 0; s < n; s++) {
                        pos[s] = kv.position(h, s);
                        float[] k = keys.get(key(l, h, pos[s]));
                        double dot = 0, kn = 0; for (int c = 0; c < d; c++) { dot += q.q()[qoff + c] * k[c]; kn += k[c] * k[c]; }
                        a[s] = w.get(h, j, s); cos[s] = dot / Math.sqrt(qn * kn + 1e-30); norm[s] = Math.sqrt(kn);
                        ham[s] = -Integer.bitCount(qc ^ code(l, k, 0));
                    }
                    double[] ra = NormProbe.ranks(a);
                    int victim = 0, normVictim = 0;
                    for (int s = 1; s < n; s++) {
                        if (ham[s] < ham[victim] || (ham[s] == ham[victim] && pos[s] < pos[victim])) victim = s;
                        if (norm[s] > norm[normVictim]) normVictim = s;
                    }
                    double[] acc = sums[l];
                    acc[0] += NormProbe.pearson(ra, NormProbe.ranks(cos)); acc[1] += NormProbe.pearson(ra, NormProbe.ranks(ham));
                    acc[2] += 100.0 * ra[victim] / (n - 1); acc[3] += 100.0 * ra[normVictim] / (n - 1); acc[4]++;
                }
            }
        }
        public EvictionState fork() { return this; }
    }

    public static void main(String[] args) throws Exception {
        PolicyRegistry.register(new MethodDef("hashprobe", ComponentKind.EVICTION, "SimHash/attention probe", List.of(), Policy::new));
        Path model = Path.of(args[0]); String text = Files.readString(Path.of(args[1])); int max = Integer.parseInt(args[2]);
        try (Backend b = Backends.select("cpu", 1); LlamaModel m = LlamaModel.load(model, b, 1);
             KvCacheManager kvm = new KvCacheManager(m.kvGeometry(), 1L << 40)) {
            sums = new double[m.kvGeometry().layers()][5];
            int[] tokens = m.tokenizer().encode(text, true, false);
            KvEval.run(m, kvm, KvCachePolicy.parse("fp32+hashprobe"), tokens, new KvEval.Options(512, 0, max), null);
            System.out.println("| layer | Spearman(attention, cos q·k) | Spearman(attention, -Hamming 16 bits) | attention percentile of HashEvict's victim | of the largest-norm key (l2's victim) |");
            System.out.println("|---:|---:|---:|---:|---:|");
            for (int l = 0; l < sums.length; l++) {
                double[] s = sums[l];
                System.out.printf("| %d | %.3f | %.3f | %.1f | %.1f |%n", l, s[0] / s[4], s[1] / s[4], s[2] / s[4], s[3] / s[4]);
            }
        }
    }
}
