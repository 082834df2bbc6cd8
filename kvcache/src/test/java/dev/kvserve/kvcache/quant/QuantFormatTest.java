package dev.kvserve.kvcache.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.data.Offset.offset;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.kernels.WeightTensor;
import dev.kvserve.kvcache.KvCacheManager;
import dev.kvserve.kvcache.KvCachePolicy;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.PagedSequence;
import dev.kvserve.kvcache.QueryRows;
import dev.kvserve.kvcache.RopeTable;
import java.lang.foreign.Arena;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The paged formats (kvquant, cq, aqua) against the plain stores and the calibration's own codec. */
class QuantFormatTest {

    private static final KvGeometry GEO = Fixtures.geometry();
    private static final int BLOCK = 8;

    @TempDir
    static Path dir;

    private static KvSamples samples;

    @BeforeAll
    static void samples() {
        samples = Fixtures.samples(GEO, 3, 96, 700, true);
    }

    static String calibrate(String method, String params) throws Exception {
        Calibration cal = Calibrator.fit(method, params, samples, null);
        Path file = dir.resolve(method + "-" + params.replaceAll("[^a-z0-9]", "_") + ".kvq");
        WeightTensor t = new WeightTensor(ModelIdentity.DEFAULT_HASHED_TENSOR, GgmlType.F32, new long[] {4, 1},
                Arena.ofAuto().allocate(16));
        CalibrationFile.write(file, ModelIdentity.of("llama", GEO, t), cal);
        return file.toString();
    }

    /** Appends tokens [start, start+n) of {@code seq} to every layer, in order, as PagedAttention does. */
    static void append(PagedSequence s, float[][][] seq, int start, int n, boolean readEachLayer) {
        int c = GEO.kvDim(), d = GEO.headDim();
        RopeTable rope = new RopeTable(GEO.rope(), d);
        for (int l = 0; l < GEO.layers(); l++) {
            float[] pre = Arrays.copyOfRange(seq[0][l], start * c, (start + n) * c);
            float[] post = pre.clone();
            for (int r = 0; r < n; r++) for (int h = 0; h < GEO.kvHeads(); h++) rope.rotate(post, r * c + h * d, start + r);
            float[] v = Arrays.copyOfRange(seq[1][l], start * c, (start + n) * c);
            s.append(new KvRows(l, n, start, GEO.kvHeads(), d, pre, post, v));
            if (readEachLayer) s.beforeAttention(l, new QueryRows(new float[n * GEO.heads() * d], n, start, GEO.heads(), d));
        }
        s.advance(n);
    }

    /** [tokens][kvDim] pre-RoPE keys and values as the paged cache decodes them, by position. */
    static float[][] read(PagedSequence s, int layer, int tokens) {
        int c = GEO.kvDim(), d = GEO.headDim();
        float[] k = new float[tokens * c], v = new float[tokens * c];
        LayerKv kv = s.layer(layer);
        for (int h = 0; h < GEO.kvHeads(); h++) {
            for (int slot = 0; slot < kv.slots(h); slot++) {
                int p = kv.position(h, slot);
                if (p < 0) continue;
                kv.readKeyPreRope(h, slot, k, p * c + h * d);
                kv.readValue(h, slot, v, p * c + h * d);
            }
        }
        return new float[][] {k, v};
    }

    @ParameterizedTest
    @ValueSource(strings = {"bits=4", "bits=3,sinks=2", "bits=2,outliers=0", "bits=3,sinks=11"})
    void kvquantBlocksDecodeExactlyAsTheCodec(String params) throws Exception {
        String file = calibrate("kvquant", params);
        int tokens = 37, c = GEO.kvDim();
        float[][][] seq = Fixtures.sequence(GEO, tokens, 71, true);
        Calibration cal = CalibrationCache.load(file, QuantMethod.KVQUANT).calibration();
        CompressedKv oracle = Oracles.open(cal);
        Fixtures.fill(oracle, seq, tokens, 5);
        try (KvCacheManager m = new KvCacheManager(GEO, 64L << 20, BLOCK); PagedSequence s = m.open("kvquant:calib=" + file)) {
            append(s, seq, 0, 20, false);
            for (int t = 20; t < tokens; t++) append(s, seq, t, 1, false);
            float[] k = new float[tokens * c], v = new float[tokens * c];
            long outliers = 0;
            for (int l = 0; l < GEO.layers(); l++) {
                float[][] got = read(s, l, tokens);
                oracle.reconstruct(l, k, v);
                assertThat(got[0]).containsExactly(k);
                assertThat(got[1]).containsExactly(v);
            }
            KvQuantSequence ks = (KvQuantSequence) oracle;
            outliers = ks.keyOutliers() + ks.valueOutliers();
            // Blocks: codes (+ fp16 sink slots); side memory: per token the value scale and the
            // outlier stores' pointer and count, per outlier 4 bytes, allocated in 32-element chunks.
            long blocks = 0;
            for (int l = 0; l < GEO.layers(); l++) {
                for (int h = 0; h < GEO.kvHeads(); h++) {
                    for (int b = 0; b < s.table(l, h).blockCount(); b++) blocks += s.table(l, h).block(b).bytes();
                }
            }
            int sinks = ((KvQuantCalibration) cal).config().sinks(), bits = ((KvQuantCalibration) cal).config().bits();
            int code = BitPacking.bytesFor(GEO.headDim(), bits);
            int nBlocks = (tokens + BLOCK - 1) / BLOCK;
            long perBlock = BLOCK * 2L * code;
            long expectBlocks = (long) GEO.layers() * GEO.kvHeads() * (nBlocks * perBlock + 4L * GEO.headDim() * sinks);
            assertThat(blocks).isEqualTo(expectBlocks);
            long side = s.bytesHeld() - blocks;
            boolean sparse = ((KvQuantCalibration) cal).config().outliers() > 0;
            long content = GEO.layers() * 4L * (tokens - sinks) + (sparse ? 2L * GEO.layers() * 6L * (tokens - sinks) + 4 * outliers : 0);
            assertThat(side).isBetween(content, content + GEO.layers() * (512 + 2L * (512 + 256)));
        }
    }

    private static final RopeTable STEP_ROPE = new RopeTable(GEO.rope(), GEO.headDim());

    /** One decode step of token t through every layer, with the hooks eviction rules act in. */
    static void step(PagedSequence s, float[][][] seq, int t) {
        int c = GEO.kvDim(), d = GEO.headDim();
        RopeTable rope = STEP_ROPE;
        for (int l = 0; l < GEO.layers(); l++) {
            float[] pre = Arrays.copyOfRange(seq[0][l], t * c, (t + 1) * c);
            float[] post = pre.clone();
            for (int h = 0; h < GEO.kvHeads(); h++) rope.rotate(post, h * d, t);
            s.append(new KvRows(l, 1, t, GEO.kvHeads(), d, pre, post, Arrays.copyOfRange(seq[1][l], t * c, (t + 1) * c)));
            QueryRows q = new QueryRows(new float[GEO.heads() * d], 1, t, GEO.heads(), d);
            s.beforeAttention(l, q);
            s.afterAttention(l, q, null, false);
        }
        s.advance(1);
    }

    @Test
    void kvquantUnderSinkEvictionHoldsTheProductOfBothSavings() throws Exception {
        String file = calibrate("kvquant", "bits=4");
        int tokens = 3000, sinks = 4, window = 512;
        float[][][] seq = Fixtures.sequence(GEO, tokens, 93, true);
        String evict = "+sink:sinks=" + sinks + ",window=" + window;
        try (KvCacheManager m = new KvCacheManager(GEO, 256L << 20, BLOCK);
             PagedSequence kvq = m.open("kvquant:calib=" + file);
             PagedSequence both = m.open("kvquant:calib=" + file + evict);
             PagedSequence fp16 = m.open("fp16");
             PagedSequence fp16Window = m.open("fp16" + evict)) {
            for (int t = 0; t < tokens; t++) {
                for (PagedSequence s : new PagedSequence[] {kvq, both, fp16, fp16Window}) step(s, seq, t);
            }
            // The eviction's saving as the pool counts it for a plain format (whole blocks).
            double kept = (double) fp16Window.bytesHeld() / fp16.bytesHeld();
            assertThat(kept).isCloseTo((double) (sinks + window) / tokens, offset(0.02));
            double product = kvq.bytesHeld() * kept;
            // Granularity: per layer and KV head a partly used block at each end of the kept run; per
            // layer the 32-position chunks of the value scales and both outlier pointer arrays (4 B
            // each) that straddle the window's start and hold the sinks, and outlier entries of dead
            // positions, never more than a quarter of the live ones or 256, until compaction.
            int kvquantBlock = BLOCK * 2 * BitPacking.bytesFor(GEO.headDim(), 4);
            long blockSlack = 2L * GEO.layers() * GEO.kvHeads() * kvquantBlock;
            long chunkSlack = GEO.layers() * 2L * SideArray.CHUNK_ELEMENTS * (4 + 4 + 4);
            long kvqSide = kvq.bytesHeld() - (long) GEO.layers() * GEO.kvHeads() * ((tokens + BLOCK - 1) / BLOCK) * kvquantBlock;
            long entrySlack = (long) (kvqSide * kept / 4) + GEO.layers() * 2L * 2 * (256 + SideArray.CHUNK_ELEMENTS);
            System.out.printf("kvquant %d B, +sink %d B, kept %.4f, product %.0f B, tolerance %d B%n", kvq.bytesHeld(),
                    both.bytesHeld(), kept, product, blockSlack + chunkSlack + entrySlack);
            assertThat((double) both.bytesHeld()).isBetween(product - blockSlack, product + blockSlack + chunkSlack + entrySlack);
            // and the composition decodes the kept tokens exactly as the uncompressed-by-eviction sequence
            float[] a = new float[GEO.headDim()], b = new float[GEO.headDim()];
            for (int l = 0; l < GEO.layers(); l++) {
                LayerKv full = kvq.layer(l), kept2 = both.layer(l);
                for (int h = 0; h < GEO.kvHeads(); h++) {
                    int live = 0;
                    for (int slot = 0; slot < kept2.slots(h); slot++) {
                        int p = kept2.position(h, slot);
                        if (p < 0) continue;
                        live++;
                        kept2.readValue(h, slot, a, 0);
                        full.readValue(h, slotOf(full, h, p), b, 0);
                        assertThat(a).containsExactly(b);
                        kept2.readKeyPreRope(h, slot, a, 0);
                        full.readKeyPreRope(h, slotOf(full, h, p), b, 0);
                        assertThat(a).containsExactly(b);
                    }
                    assertThat(live).isEqualTo(sinks + window);
                }
            }
        }
    }

    private static int slotOf(LayerKv kv, int h, int position) {
        for (int slot = 0; slot < kv.slots(h); slot++) if (kv.position(h, slot) == position) return slot;
        throw new AssertionError("position " + position + " not held");
    }

    @ParameterizedTest
    @ValueSource(strings = {"c=4,bits=2", "c=8,bits=1,rope=post,sinks=1", "c=2,bits=4,rope=post,window=10", "c=4,bits=2,sinks=3,window=6"})
    void cqBlocksDecodeAsTheCodecAndSealTheWindow(String params) throws Exception {
        String file = calibrate("cq", params);
        CqCalibration cal = (CqCalibration) CalibrationCache.load(file, QuantMethod.CQ).calibration();
        int tokens = 41, c = GEO.kvDim();
        float[][][] seq = Fixtures.sequence(GEO, tokens, 72, true);
        CompressedKv oracle = Oracles.open(cal);
        Fixtures.fill(oracle, seq, tokens, 1);
        int window = cal.config().window(), sinks = cal.config().sinks();
        try (KvCacheManager m = new KvCacheManager(GEO, 64L << 20, BLOCK); PagedSequence s = m.open("cq:calib=" + file)) {
            append(s, seq, 0, 13, false);
            for (int t = 13; t < tokens; t++) append(s, seq, t, 1, false);
            float[] k = new float[tokens * c], v = new float[tokens * c];
            for (int l = 0; l < GEO.layers(); l++) {
                float[][] got = read(s, l, tokens);
                oracle.reconstruct(l, k, v);
                for (int t = 0; t < tokens; t++) {
                    // A block is sealed once its newest token is more than `window` positions old.
                    boolean sealed = window == 0 || (t / BLOCK + 1) * BLOCK - 1 <= tokens - 1 - window;
                    boolean fp16 = t < sinks || !sealed;
                    for (int i = 0; i < c; i++) {
                        int o = t * c + i;
                        if (fp16) {
                            // Post-RoPE keys are kept rotated in fp16 and rotated back on read.
                            float x = seq[0][l][o];
                            if (cal.config().postRope()) assertThat((double) got[0][o]).isCloseTo(x, offset(2e-3 * (1 + Math.abs(x))));
                            else assertThat(got[0][o]).isEqualTo(Half.round(x));
                            assertThat(got[1][o]).isEqualTo(Half.round(seq[1][l][o]));
                        } else if (cal.config().postRope() && window > 0) {
                            // Sealed from the fp16 copy of the rotated key (the plain store rounds the
                            // unrotated key instead): check it is the centroid nearest to that copy.
                            assertThat(got[1][o]).isEqualTo(v[o]);
                            if (i % cal.config().channels() == 0) assertNearestPostRope(cal, l, seq[0][l], got[0], t, i);
                        } else {
                            assertThat((double) got[0][o]).as("key %d/%d", t, i).isCloseTo(k[o], offset(1e-5));
                            assertThat(got[1][o]).isEqualTo(v[o]);
                        }
                    }
                }
            }
        }
    }

    private static void assertNearestPostRope(CqCalibration cal, int layer, float[] keys, float[] got, int t, int channel) {
        int c = GEO.kvDim(), d = GEO.headDim(), h = channel / d, w = cal.config().channels();
        RopeTable rope = new RopeTable(GEO.rope(), d);
        float[] x = Arrays.copyOfRange(keys, t * c + h * d, t * c + (h + 1) * d);
        float[] y = Arrays.copyOfRange(got, t * c + h * d, t * c + (h + 1) * d);
        rope.rotate(x, 0, t);
        rope.rotate(y, 0, t);
        for (int i = 0; i < d; i++) x[i] = Half.round(x[i]);
        int local = channel - h * d, g = channel / w;
        double mine = 0;
        for (int i = 0; i < w; i++) mine += Math.pow(x[local + i] - y[local + i], 2);
        for (int j = 0; j < cal.config().centroids(); j++) {
            float[] cent = cal.keyCentroid(layer, g, j);
            double other = 0;
            for (int i = 0; i < w; i++) other += Math.pow(x[local + i] - cent[i], 2);
            assertThat(mine).isLessThanOrEqualTo(other + 1e-4);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"bits=2,first=fp16,prefix=3,buffer=8", "bits=3,prefix=0,buffer=4", "bits=2,dim=4,first=2,prefix=9,buffer=8"})
    void aquaSealedBlocksHoldThePredictionChain(String params) throws Exception {
        String file = calibrate("aqua", params);
        AquaCalibration cal = (AquaCalibration) CalibrationCache.load(file, QuantMethod.AQUA).calibration();
        int tokens = 45, c = GEO.kvDim();
        int prefix = cal.config().prefix(), buffer = cal.config().buffer();
        float[][][] seq = Fixtures.sequence(GEO, tokens, 73, true);
        try (KvCacheManager m = new KvCacheManager(GEO, 64L << 20, BLOCK); PagedSequence s = m.open("aqua:calib=" + file)) {
            append(s, seq, 0, 17, true);
            for (int t = 17; t < tokens; t++) append(s, seq, t, 1, true);
            // Re-read every layer in order and compare with the chain computed from the original values.
            float[] prevK = null, prevV = null;
            for (int l = 0; l < GEO.layers(); l++) {
                s.beforeAttention(l, new QueryRows(new float[GEO.heads() * GEO.headDim()], 1, tokens - 1, GEO.heads(), GEO.headDim()));
                float[][] got = read(s, l, tokens);
                float[][] chain = chain(cal, seq, l, tokens, prevK, prevV);
                prevK = chain[0];
                prevV = chain[1];
                for (int t = 0; t < tokens; t++) {
                    boolean sealed = (t / BLOCK + 1) * BLOCK - 1 <= tokens - 1 - buffer;
                    boolean fp16 = t < prefix || !sealed;
                    for (int i = 0; i < c; i++) {
                        int o = t * c + i;
                        if (fp16) {
                            assertThat(got[0][o]).isEqualTo(Half.round(seq[0][l][o]));
                            assertThat(got[1][o]).isEqualTo(Half.round(seq[1][l][o]));
                        } else {
                            assertThat((double) got[0][o]).as("layer %d key %d/%d", l, t, i).isCloseTo(chain[0][o], offset(1e-4));
                            assertThat((double) got[1][o]).as("layer %d value %d/%d", l, t, i).isCloseTo(chain[1][o], offset(1e-4));
                        }
                    }
                }
            }
            // Layers are rebuilt in order: reading an earlier layer now is refused, not answered wrongly
            // (a head of a sealed token only decodes together with the other heads, in that rebuild).
            assertThatThrownBy(() -> read(s, 1, tokens)).hasMessageContaining("layers are read in order");
            long sealedTokens = 0;
            for (int t = prefix; t < tokens; t++) if ((t / BLOCK + 1) * BLOCK - 1 <= tokens - 1 - buffer) sealedTokens++;
            assertThat(sealedTokens).isPositive();
        }
    }

    /** prediction + dequant(quant(x − prediction)) for every token, from the original (float) values. */
    private static float[][] chain(AquaCalibration cal, float[][][] seq, int l, int n, float[] prevK, float[] prevV) {
        int c = GEO.kvDim();
        float[] k = new float[n * c], v = new float[n * c];
        float[] predK = l == 0 ? new float[n * c] : cal.predictKeys(l, prevK, n);
        round(cal.quantizer(l), seq[0][l], predK, k, n);
        float[] predV = l == 0 ? new float[n * c] : cal.predictValues(l, k, prevV, n);
        round(cal.quantizer(l), seq[1][l], predV, v, n);
        return new float[][] {k, v};
    }

    private static void round(HiggsQuantizer q, float[] x, float[] pred, float[] out, int n) {
        int c = GEO.kvDim();
        float[] res = new float[c], back = new float[c];
        for (int t = 0; t < n; t++) {
            for (int i = 0; i < c; i++) res[i] = x[t * c + i] - pred[t * c + i];
            if (q == null) for (int i = 0; i < c; i++) back[i] = Half.round(res[i]);
            else q.roundTrip(res, 0, back, 0);
            for (int i = 0; i < c; i++) out[t * c + i] = pred[t * c + i] + back[i];
        }
    }

    @Test
    void specsParseCanonicallyAndRefuseSettingsTheFileWasNotMadeWith() throws Exception {
        String file = calibrate("kvquant", "bits=3");
        KvCachePolicy p = KvCachePolicy.parse("kvquant:calib=" + file);
        assertThat(p.toString()).isEqualTo("kvquant:calib=" + file + ",bits=file,outliers=file,fisher=file,sinks=file,qnorm=file");
        assertThat(KvCachePolicy.parse(p.toString())).isEqualTo(p);
        assertThat(KvCachePolicy.parse("kvquant:calib=" + file + ",bits=3,outliers=0.01,sinks=1").format().spec()).contains("bits=3");
        assertThatThrownBy(() -> KvCachePolicy.parse("kvquant:calib=" + file + ",bits=4"))
                .hasMessageContaining("fitted with bits=3 but the policy asks for bits=4");
        assertThatThrownBy(() -> KvCachePolicy.parse("kvquant:bits=4")).hasMessageContaining("needs parameter 'calib'");
        assertThatThrownBy(() -> KvCachePolicy.parse("kvquant:calib=/no/such/file.kvq")).hasMessageContaining("cannot be read");
        assertThatThrownBy(() -> KvCachePolicy.parse("cq:calib=" + file)).hasMessageContaining("holds a kvquant calibration");
        String cq = calibrate("cq", "c=8,bits=1");
        assertThat(KvCachePolicy.parse("cq:calib=" + cq + ",c=8,bits=1,window=32").toString()).contains("window=32");
        WeightTensor otherWeights = new WeightTensor(ModelIdentity.DEFAULT_HASHED_TENSOR, GgmlType.F32, new long[] {2, 1},
                Arena.ofAuto().allocate(8));
        assertThatThrownBy(() -> CalibratedFormat.checkModel(p, ModelIdentity.of("llama", GEO, otherWeights)))
                .hasMessageContaining("was made for a different model").hasMessageContaining("SHA-256");
        WeightTensor same = new WeightTensor(ModelIdentity.DEFAULT_HASHED_TENSOR, GgmlType.F32, new long[] {4, 1}, Arena.ofAuto().allocate(16));
        CalibratedFormat.checkModel(p, ModelIdentity.of("llama", GEO, same));
        CalibratedFormat.checkModel(KvCachePolicy.parse("fp16"), ModelIdentity.of("llama", GEO, otherWeights));
        // The cache checks the same when it knows its model: the file's weight hash differs from the model's.
        ModelIdentity loaded = ModelIdentity.of("llama", GEO, otherWeights);
        try (KvCacheManager m = new KvCacheManager(GEO, 1 << 20, BLOCK, loaded)) {
            assertThatThrownBy(() -> m.open("kvquant:calib=" + file))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining(file)
                    .hasMessageContaining(ModelIdentity.of("llama", GEO, same).toString())
                    .hasMessageContaining(loaded.toString())
                    .hasMessageContaining("SHA-256 of " + ModelIdentity.DEFAULT_HASHED_TENSOR);
            assertThat(m.stats().sequences()).isZero();
            m.open("fp16").close();
        }
        try (KvCacheManager m = new KvCacheManager(GEO, 1 << 20, BLOCK, ModelIdentity.of("llama", GEO, same))) {
            m.open("kvquant:calib=" + file).close();
        }
        KvGeometry other = Fixtures.geometry(3, 4, 4, 4);
        try (KvCacheManager m = new KvCacheManager(other, 1 << 20, BLOCK)) {
            assertThatThrownBy(() -> m.open("kvquant:calib=" + file)).hasMessageContaining("was made for a model with 3 layers, 4 heads, 2 KV heads");
        }
    }

    @Test
    void rewritingOneHeadReEncodesItAgainstTheTokensScaleAndLeavesTheOthers() throws Exception {
        String file = calibrate("kvquant", "bits=4");
        KvQuantCalibration cal = (KvQuantCalibration) CalibrationCache.load(file, QuantMethod.KVQUANT).calibration();
        int tokens = 12, c = GEO.kvDim(), d = GEO.headDim();
        float[][][] seq = Fixtures.sequence(GEO, tokens, 75, true);
        try (KvCacheManager m = new KvCacheManager(GEO, 64L << 20, BLOCK); PagedSequence s = m.open("kvquant:calib=" + file)) {
            append(s, seq, 0, tokens, false);
            float[][] before = read(s, 1, tokens);
            int pos = 7, head = 1;
            LayerKv kv = s.layer(1);
            int slot = -1;
            for (int i = 0; i < kv.slots(head); i++) if (kv.position(head, i) == pos) slot = i;
            // The merged key/value: the average of tokens 6 and 7 (what D2O-style merging writes), plus a spike.
            float[] key = new float[d], value = new float[d];
            for (int i = 0; i < d; i++) {
                key[i] = (seq[0][1][6 * c + head * d + i] + seq[0][1][7 * c + head * d + i]) / 2;
                value[i] = (seq[1][1][6 * c + head * d + i] + seq[1][1][7 * c + head * d + i]) / 2;
            }
            value[3] = 40f;
            RopeTable rope = new RopeTable(GEO.rope(), d);
            float[] post = key.clone();
            rope.rotate(post, 0, pos);
            kv.rewrite(head, slot, post, 0, value, 0);
            float[][] after = read(s, 1, tokens);
            float[] range = cal.keyRange(1);
            for (int t = 0; t < tokens; t++) {
                for (int i = 0; i < c; i++) {
                    int o = t * c + i;
                    boolean rewritten = t == pos && i / d == head;
                    if (!rewritten) {
                        assertThat(after[0][o]).isEqualTo(before[0][o]);
                        assertThat(after[1][o]).isEqualTo(before[1][o]);
                    } else {
                        int j = i - head * d;
                        assertThat((double) after[0][o]).isCloseTo(key[j], offset(range[i] * 0.3 + 1e-3));
                    }
                }
            }
            // The spike is far outside the token's value range: kept exactly as an outlier.
            assertThat(after[1][pos * c + head * d + 3]).isEqualTo(40f);
        }
    }

    @Test
    void forksCopyTheOutlierStores() throws Exception {
        String file = calibrate("kvquant", "bits=4");
        int tokens = 20;
        float[][][] seq = Fixtures.sequence(GEO, tokens, 74, true);
        try (KvCacheManager m = new KvCacheManager(GEO, 64L << 20, BLOCK); PagedSequence s = m.open("kvquant:calib=" + file)) {
            append(s, seq, 0, tokens, false);
            try (PagedSequence f = m.fork(s)) {
                for (int l = 0; l < GEO.layers(); l++) {
                    float[][] a = read(s, l, tokens), b = read(f, l, tokens);
                    assertThat(b[0]).containsExactly(a[0]);
                    assertThat(b[1]).containsExactly(a[1]);
                }
                assertThat(f.bytesHeld()).isEqualTo(s.bytesHeld());
            }
        }
    }
}
