package dev.kvserve.kernels.cuda;

import static dev.kvserve.kernels.cuda.DeviceBuffers.floats;
import static dev.kvserve.kernels.cuda.DeviceBuffers.gaussian;
import static dev.kvserve.kernels.cuda.DeviceBuffers.ints;
import static dev.kvserve.kernels.cuda.DeviceBuffers.longs;
import static dev.kvserve.kernels.cuda.DeviceBuffers.readBytes;
import static dev.kvserve.kernels.cuda.DeviceBuffers.readFloats;
import static dev.kvserve.kernels.cuda.DeviceBuffers.readInts;
import static dev.kvserve.kernels.cuda.DeviceBuffers.readLongs;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.data.Offset.offset;

import dev.kvserve.kernels.cuda.CudaKvKernels.GroupReduce;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** KV-cache kernels against scalar references; on a GPU and on the CPU emulation. */
class CudaKvKernelsTest {

    @AfterAll
    static void close() {
        TestDevices.closeAll();
    }

    static Stream<Arguments> formats() {
        return TestDevices.names().flatMap(d -> Arrays.stream(KvFormat.values()).map(f -> Arguments.of(d, f)));
    }

    static Stream<Arguments> writeLayouts() {
        return TestDevices.names().flatMap(d -> Arrays.stream(KvFormat.values()).flatMap(f -> Stream.of(
                Arguments.of(d, new PagedKvLayout(f, 16, 2, 64, 32)),
                // 5 tokens of 6 code bytes: the parameters start at the 16-byte boundary after 30 bytes
                Arguments.of(d, new PagedKvLayout(f, 5, 3, 12, 6)))));
    }

    /** Stores rows into scattered slots; the pool's bytes decode to exactly the reference round trip. */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("writeLayouts")
    void writeStoresTheReferenceQuantizationInTheDocumentedLayout(String device, PagedKvLayout l) {
        CudaBackend b = TestDevices.backend(device);
        KvFormat format = l.format();
        Random rnd = new Random(23 + format.ordinal());
        int rows = 5, width = l.kvHeads() * l.headDim(), capacity = 6 * l.blockTokens();
        int[] slots = {0, 17 % capacity, capacity - 1, -1, 23 % capacity};
        float[] src = gaussian(rnd, rows * width, 1.5f);
        Arrays.fill(src, width, width + l.group(), 0.7f);   // a constant group: zero scale
        MemorySegment pool = b.kv().allocatePool(l, 6);
        b.kv().write(l, pool, floats(b, src), slots, rows);
        byte[] bytes = readBytes(b, pool);
        for (int r = 0; r < rows; r++) {
            if (slots[r] < 0) continue;
            for (int h = 0; h < l.kvHeads(); h++) {
                float[] x = Arrays.copyOfRange(src, r * width + h * l.headDim(), r * width + (h + 1) * l.headDim());
                assertThat(KvReference.read(l, bytes, slots[r], h)).as("row %d head %d", r, h)
                        .containsExactly(KvReference.roundTrip(format, x, l.group()));
            }
        }
        assertThat(KvReference.read(l, bytes, 1, 1)).containsOnly(0f);   // never written
        assertThatThrownBy(() -> b.kv().write(l, pool, floats(b, src), new int[] {capacity}, 1))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("slot " + capacity);
    }

    record AttentionCase(KvFormat format, int headDim, int kvHeads, int heads, int group) {}

    static Stream<Arguments> attentionCases() {
        List<AttentionCase> cases = List.of(
                new AttentionCase(KvFormat.F32, 64, 2, 4, 64),
                new AttentionCase(KvFormat.F32, 80, 1, 2, 80),       // lanes past headDim idle
                new AttentionCase(KvFormat.F16, 128, 2, 16, 128),    // a full 8-head group
                new AttentionCase(KvFormat.INT8, 16, 1, 9, 16),      // 9-head group: two chunks
                new AttentionCase(KvFormat.INT8, 64, 2, 2, 32),
                new AttentionCase(KvFormat.INT4, 256, 2, 2, 32),
                new AttentionCase(KvFormat.INT4, 8, 4, 8, 8));       // head size of stories260K
        return TestDevices.names().flatMap(d -> cases.stream().map(c -> Arguments.of(d, c)));
    }

    /**
     * Three sequences in a shuffled pool, one longer than a split; rows see a causal prefix each,
     * one sees nothing. Reference: double-precision softmax attention over the tokens decoded from
     * the pool's bytes. Tolerance 5e-5: fp32 dot products, exp and split merging.
     */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("attentionCases")
    void pagedAttentionMatchesReference(String device, AttentionCase c) {
        CudaBackend b = TestDevices.backend(device);
        PagedKvLayout l = new PagedKvLayout(c.format(), 16, c.kvHeads(), c.headDim(), c.group());
        Random rnd = new Random(c.headDim() * 31L + c.heads());
        int[] seqLen = {300, 1, 37};
        int maxBlocks = 19, poolBlocks = 30;
        List<Integer> free = new ArrayList<>(IntStream.range(0, poolBlocks).boxed().toList());
        Collections.shuffle(free, rnd);
        int[] tables = new int[seqLen.length * maxBlocks];
        Arrays.fill(tables, -1);
        int next = 0;
        for (int s = 0; s < seqLen.length; s++) {
            for (int i = 0; i < (seqLen[s] + 15) / 16; i++) tables[s * maxBlocks + i] = free.get(next++);
        }
        int total = Arrays.stream(seqLen).sum(), width = l.kvHeads() * l.headDim();
        int[] slots = new int[total];
        int[][] slotOf = new int[seqLen.length][];
        for (int s = 0, r = 0; s < seqLen.length; s++) {
            slotOf[s] = new int[seqLen[s]];
            for (int i = 0; i < seqLen[s]; i++, r++) {
                int[] table = Arrays.copyOfRange(tables, s * maxBlocks, (s + 1) * maxBlocks);
                slots[r] = slotOf[s][i] = l.slot(table, i);
            }
        }
        MemorySegment kPool = b.kv().allocatePool(l, poolBlocks), vPool = b.kv().allocatePool(l, poolBlocks);
        b.kv().write(l, kPool, floats(b, gaussian(rnd, total * width, 1f)), slots, total);
        b.kv().write(l, vPool, floats(b, gaussian(rnd, total * width, 1f)), slots, total);
        byte[] kb = readBytes(b, kPool), vb = readBytes(b, vPool);

        int[] rowSeq = {0, 1, 2, 2}, rowCtx = {300, 1, 20, 0};
        int rows = rowSeq.length, qWidth = c.heads() * c.headDim();
        float[] q = gaussian(rnd, rows * qWidth, 1f);
        float scale = (float) (1 / Math.sqrt(c.headDim()));
        MemorySegment out = b.allocate(4L * rows * qWidth);
        b.kv().attention(l, kPool, vPool, floats(b, q), out, c.heads(), rows, tables, maxBlocks, rowSeq, rowCtx, scale);
        float[] got = readFloats(b, out, rows * qWidth);

        int group = c.heads() / c.kvHeads();
        for (int r = 0; r < rows; r++) {
            for (int h = 0; h < c.heads(); h++) {
                int kvh = h / group, ctx = rowCtx[r];
                double[] want = new double[c.headDim()];
                if (ctx > 0) {
                    double[] score = new double[ctx];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int t = 0; t < ctx; t++) {
                        float[] k = KvReference.read(l, kb, slotOf[rowSeq[r]][t], kvh);
                        double dot = 0;
                        for (int d = 0; d < c.headDim(); d++) dot += (double) q[r * qWidth + h * c.headDim() + d] * k[d];
                        score[t] = dot * scale;
                        max = Math.max(max, score[t]);
                    }
                    double sum = 0;
                    for (int t = 0; t < ctx; t++) sum += Math.exp(score[t] - max);
                    for (int t = 0; t < ctx; t++) {
                        float[] v = KvReference.read(l, vb, slotOf[rowSeq[r]][t], kvh);
                        double p = Math.exp(score[t] - max) / sum;
                        for (int d = 0; d < c.headDim(); d++) want[d] += p * v[d];
                    }
                }
                for (int d = 0; d < c.headDim(); d++) {
                    assertThat((double) got[r * qWidth + h * c.headDim() + d]).as("row %d head %d dim %d", r, h, d)
                            .isCloseTo(want[d], offset(5e-5));
                }
            }
        }
        int[] badTables = tables.clone();
        badTables[0] = poolBlocks;
        assertThatThrownBy(() -> b.kv().attention(l, kPool, vPool, floats(b, q), out, c.heads(), rows, badTables,
                maxBlocks, rowSeq, rowCtx, scale)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("outside the pool");
    }

    /** Norms of the cached (as stored) keys and of fresh rows. */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("formats")
    void keyNormsOfStoredKeys(String device, KvFormat format) {
        CudaBackend b = TestDevices.backend(device);
        PagedKvLayout l = new PagedKvLayout(format, 8, 3, 48, 16);
        Random rnd = new Random(29);
        int n = 21, width = l.kvHeads() * l.headDim();
        int[] table = {4, 0, 2};
        int[] slots = IntStream.range(0, n).map(i -> l.slot(table, i)).toArray();
        float[] keys = gaussian(rnd, n * width, 2f);
        MemorySegment pool = b.kv().allocatePool(l, 5);
        b.kv().write(l, pool, floats(b, keys), slots, n);
        MemorySegment out = b.allocate(4L * l.kvHeads() * n);
        b.kv().keyNorms(l, pool, table, n, out);
        float[] got = readFloats(b, out, l.kvHeads() * n);
        byte[] bytes = readBytes(b, pool);
        for (int h = 0; h < l.kvHeads(); h++) {
            for (int i = 0; i < n; i++) {
                float[] k = KvReference.read(l, bytes, slots[i], h);
                double ss = 0;
                for (float v : k) ss += (double) v * v;
                assertThat((double) got[h * n + i]).isCloseTo(Math.sqrt(ss), offset(1e-5 * (1 + Math.sqrt(ss))));
            }
        }
        MemorySegment rowOut = b.allocate(4L * n * l.kvHeads());
        b.kv().rowNorms(floats(b, keys), n, l.kvHeads(), l.headDim(), rowOut);
        float[] rowNorms = readFloats(b, rowOut, n * l.kvHeads());
        for (int i = 0; i < n; i++) {
            for (int h = 0; h < l.kvHeads(); h++) {
                double ss = 0;
                for (int d = 0; d < l.headDim(); d++) ss += Math.pow(keys[i * width + h * l.headDim() + d], 2);
                assertThat((double) rowNorms[i * l.kvHeads() + h]).isCloseTo(Math.sqrt(ss), offset(1e-5 * Math.sqrt(ss)));
            }
        }
    }

    static Stream<String> devices() {
        return TestDevices.names();
    }

    /**
     * SimHash bits equal sign(R·x) wherever the projection is not within rounding of zero; Hamming
     * scores over those signatures are exact, for every group reduction and with accumulation.
     */
    @ParameterizedTest
    @MethodSource("devices")
    void simhashSignaturesAndHammingScores(String device) {
        CudaBackend b = TestDevices.backend(device);
        Random rnd = new Random(37);
        int kvHeads = 2, heads = 6, D = 32, bits = 48, B = 8, n = 19;
        int[] table = {2, 0, 3};
        PagedKvLayout l = PagedKvLayout.of(KvFormat.F32, B, kvHeads, D);
        float[] proj = gaussian(rnd, kvHeads * bits * D, 1f);
        float[] keys = gaussian(rnd, n * kvHeads * D, 1f);
        float[] query = gaussian(rnd, heads * D, 1f);
        MemorySegment dProj = floats(b, proj);

        MemorySegment keySig = b.allocate(8L * n * kvHeads);
        b.kv().simhash(floats(b, keys), n, kvHeads, D, dProj, (long) bits * D, bits, keySig);
        long[] ks = readLongs(b, keySig, n * kvHeads);
        for (int i = 0; i < n; i++) {
            for (int h = 0; h < kvHeads; h++) {
                for (int j = 0; j < bits; j++) {
                    double dot = 0;
                    for (int d = 0; d < D; d++) dot += (double) proj[(h * bits + j) * D + d] * keys[(i * kvHeads + h) * D + d];
                    if (Math.abs(dot) > 1e-4) {
                        assertThat((ks[i * kvHeads + h] >>> j) & 1).as("token %d head %d bit %d", i, h, j)
                                .isEqualTo(dot > 0 ? 1L : 0L);
                    }
                }
                assertThat(ks[i * kvHeads + h] >>> bits).isZero();
            }
        }
        // Hamming distances only mean something between signatures of one projection: hash keys
        // and queries with the shared form (stride 0), head 0's rows of proj
        b.kv().simhash(floats(b, keys), n, kvHeads, D, dProj, 0, bits, keySig);
        ks = readLongs(b, keySig, n * kvHeads);
        MemorySegment querySig = b.allocate(8L * heads);
        b.kv().simhash(floats(b, query), 1, heads, D, dProj, 0, bits, querySig);
        long[] qs = readLongs(b, querySig, heads);
        for (int h = 0; h < heads; h++) {
            for (int j = 0; j < bits; j++) {
                double dot = 0;
                for (int d = 0; d < D; d++) dot += (double) proj[j * D + d] * query[h * D + d];
                if (Math.abs(dot) > 1e-4) assertThat((qs[h] >>> j) & 1).isEqualTo(dot > 0 ? 1L : 0L);
            }
        }

        long[] bySlot = new long[4 * B * kvHeads];
        for (int i = 0; i < n; i++) {
            int slot = l.slot(table, i);
            for (int h = 0; h < kvHeads; h++) bySlot[slot * kvHeads + h] = ks[i * kvHeads + h];
        }
        MemorySegment dKeySigs = longs(b, bySlot);
        MemorySegment out = b.allocate(4L * kvHeads * n);
        int group = heads / kvHeads;
        for (GroupReduce reduce : GroupReduce.values()) {
            b.kv().hammingScores(l, querySig, heads, dKeySigs, table, n, reduce, false, out);
            float[] got = readFloats(b, out, kvHeads * n);
            b.kv().hammingScores(l, querySig, heads, dKeySigs, table, n, reduce, true, out);
            float[] twice = readFloats(b, out, kvHeads * n);
            for (int h = 0; h < kvHeads; h++) {
                for (int i = 0; i < n; i++) {
                    float agg = 0;
                    for (int g = 0; g < group; g++) {
                        float d = Long.bitCount(qs[h * group + g] ^ ks[i * kvHeads + h]);
                        agg = reduce == GroupReduce.MAX ? (g == 0 ? d : Math.max(agg, d)) : agg + d;
                    }
                    if (reduce == GroupReduce.MEAN) agg /= group;
                    assertThat(got[h * n + i]).as("%s head %d token %d", reduce, h, i).isEqualTo(agg);
                    assertThat(twice[h * n + i]).isEqualTo(2 * agg);
                }
            }
        }
        assertThatThrownBy(() -> b.kv().simhash(floats(b, query), 1, heads, D, dProj, 0, 65, querySig))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("65");
    }

    /**
     * ClusterKV: centroid scores (tolerance 1e-5 relative), top clusters (exact, over the device
     * scores), and recall of member tokens up to the budget (exact).
     */
    @ParameterizedTest
    @MethodSource("devices")
    void clusterScoringTopKAndRecall(String device) {
        CudaBackend b = TestDevices.backend(device);
        Random rnd = new Random(41);
        int rows = 2, heads = 4, kvHeads = 2, D = 40, nlist = 13, nTok = 90, budget = 25, kc = 6;
        long stride = (long) kvHeads * nlist * D;
        float[] centroids = gaussian(rnd, (int) (rows * stride), 1f);
        float[] q = gaussian(rnd, rows * heads * D, 1f);
        MemorySegment scores = b.allocate(4L * rows * heads * nlist);
        b.kv().clusterScores(floats(b, q), rows, heads, kvHeads, D, floats(b, centroids), stride, nlist, scores);
        float[] got = readFloats(b, scores, rows * heads * nlist);
        for (int r = 0; r < rows; r++) {
            for (int h = 0; h < heads; h++) {
                for (int j = 0; j < nlist; j++) {
                    double dot = 0;
                    for (int d = 0; d < D; d++) {
                        dot += (double) q[(r * heads + h) * D + d] * centroids[(int) (r * stride + ((h / 2) * nlist + j) * D + d)];
                    }
                    assertThat((double) got[(r * heads + h) * nlist + j]).isCloseTo(dot, offset(1e-5 * (1 + Math.abs(dot))));
                }
            }
        }
        int rowHeads = rows * heads;
        MemorySegment order = b.allocate(4L * rowHeads * kc), orderVal = b.allocate(4L * rowHeads * kc);
        b.topKOnDevice(scores, nlist, kc, rowHeads, order, orderVal);
        int[] ord = readInts(b, order, rowHeads * kc);
        for (int rh = 0; rh < rowHeads; rh++) {
            final int base = rh * nlist;
            List<Integer> best = IntStream.range(0, nlist).boxed()
                    .sorted(Comparator.<Integer>comparingDouble(j -> -got[base + j]).thenComparingInt(j -> j)).toList();
            for (int i = 0; i < kc; i++) assertThat(ord[rh * kc + i]).isEqualTo(best.get(i));
        }

        // random cluster labels per KV head -> CSR offsets and members sorted by cluster
        int[] offsets = new int[kvHeads * (nlist + 1)], members = new int[kvHeads * nTok];
        for (int h = 0; h < kvHeads; h++) {
            int[] label = new int[nTok];
            for (int t = 0; t < nTok; t++) label[t] = rnd.nextInt(nlist);
            int pos = 0;
            for (int cl = 0; cl < nlist; cl++) {
                offsets[h * (nlist + 1) + cl] = pos;
                for (int t = 0; t < nTok; t++) if (label[t] == cl) members[h * nTok + pos++] = t;
            }
            offsets[h * (nlist + 1) + nlist] = pos;
        }
        MemorySegment recalled = b.allocate(4L * rowHeads * budget), counts = b.allocate(4L * rowHeads);
        b.kv().clusterGather(order, kc, rowHeads, heads, kvHeads, ints(b, offsets), ints(b, members), nlist, nTok,
                budget, recalled, counts);
        int[] rec = readInts(b, recalled, rowHeads * budget), cnt = readInts(b, counts, rowHeads);
        for (int rh = 0; rh < rowHeads; rh++) {
            int kvh = (rh % heads) / (heads / kvHeads);
            List<Integer> want = new ArrayList<>();
            for (int i = 0; i < kc && want.size() < budget; i++) {
                int cl = ord[rh * kc + i];
                for (int p = offsets[kvh * (nlist + 1) + cl]; p < offsets[kvh * (nlist + 1) + cl + 1] && want.size() < budget; p++) {
                    want.add(members[kvh * nTok + p]);
                }
            }
            assertThat(cnt[rh]).isEqualTo(want.size());
            for (int i = 0; i < budget; i++) {
                assertThat(rec[rh * budget + i]).as("query head %d slot %d", rh, i).isEqualTo(i < want.size() ? want.get(i) : -1);
            }
        }
    }

    /** Quest page bounds from the stored keys, and page upper-bound scores per query head. */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("formats")
    void questBoundsAndScores(String device, KvFormat format) {
        CudaBackend b = TestDevices.backend(device);
        Random rnd = new Random(43);
        PagedKvLayout l = new PagedKvLayout(format, 16, 2, 32, 16);
        int poolBlocks = 7, maxBlocks = 4, heads = 4, D = l.headDim(), H = l.kvHeads();
        int[] tables = {5, 1, 3, -1, /* seq 1 */ 0, 6, -1, -1};
        int[] seqLen = {40, 17};
        MemorySegment pool = b.kv().allocatePool(l, poolBlocks);
        List<Integer> slots = new ArrayList<>();
        for (int s = 0; s < 2; s++) {
            for (int i = 0; i < seqLen[s]; i++) slots.add(l.slot(Arrays.copyOfRange(tables, s * maxBlocks, (s + 1) * maxBlocks), i));
        }
        int total = slots.size();
        b.kv().write(l, pool, floats(b, gaussian(rnd, total * H * D, 1f)), slots.stream().mapToInt(Integer::intValue).toArray(), total);
        int[] blocks = {5, 1, 3, 0, 6}, counts = {16, 16, 8, 16, 1};
        MemorySegment minMeta = b.allocate(4L * poolBlocks * H * D), maxMeta = b.allocate(4L * poolBlocks * H * D);
        b.kv().questBounds(l, pool, blocks, counts, blocks.length, minMeta, maxMeta);
        float[] mn = readFloats(b, minMeta, poolBlocks * H * D), mx = readFloats(b, maxMeta, poolBlocks * H * D);
        byte[] bytes = readBytes(b, pool);
        for (int i = 0; i < blocks.length; i++) {
            for (int h = 0; h < H; h++) {
                for (int c = 0; c < D; c++) {
                    float lo = Float.POSITIVE_INFINITY, hi = Float.NEGATIVE_INFINITY;
                    for (int t = 0; t < counts[i]; t++) {
                        float v = KvReference.read(l, bytes, blocks[i] * l.blockTokens() + t, h)[c];
                        lo = Math.min(lo, v);
                        hi = Math.max(hi, v);
                    }
                    int o = (blocks[i] * H + h) * D + c;
                    // INT4 dequantization may be one fused multiply-add on the GPU
                    assertThat(mn[o]).isCloseTo(lo, offset(1e-6f * (1 + Math.abs(lo))));
                    assertThat(mx[o]).isCloseTo(hi, offset(1e-6f * (1 + Math.abs(hi))));
                }
            }
        }
        int rows = 2, maxPages = 4;
        int[] rowSeq = {0, 1}, rowPages = {3, 2};
        float[] q = gaussian(rnd, rows * heads * D, 1f);
        MemorySegment out = b.allocate(4L * rows * heads * maxPages);
        b.kv().questScores(l, floats(b, q), rows, heads, minMeta, maxMeta, tables, maxBlocks, rowSeq, rowPages, maxPages, out);
        float[] got = readFloats(b, out, rows * heads * maxPages);
        for (int r = 0; r < rows; r++) {
            for (int h = 0; h < heads; h++) {
                for (int p = 0; p < maxPages; p++) {
                    float g = got[(r * heads + h) * maxPages + p];
                    if (p >= rowPages[r]) {
                        assertThat(g).isEqualTo(Float.NEGATIVE_INFINITY);
                        continue;
                    }
                    int blk = tables[rowSeq[r] * maxBlocks + p], kvh = h / (heads / H);
                    double want = 0;
                    for (int c = 0; c < D; c++) {
                        double qc = q[(r * heads + h) * D + c];
                        want += Math.max(qc * mx[(blk * H + kvh) * D + c], qc * mn[(blk * H + kvh) * D + c]);
                    }
                    assertThat((double) g).isCloseTo(want, offset(1e-5 * (1 + Math.abs(want))));
                }
            }
        }
    }
}
