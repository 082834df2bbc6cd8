package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.format.AbstractBlockCodec;
import dev.kvserve.kvcache.format.BlockCodec;
import dev.kvserve.kvcache.format.BlockContext;
import dev.kvserve.kvcache.format.FormatBinding;
import dev.kvserve.kvcache.format.FullPrecisionFormat;
import dev.kvserve.kvcache.format.KeyFrame;
import dev.kvserve.kvcache.format.KvStorageFormat;
import dev.kvserve.kvcache.policy.Params;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The {@code cq} storage format: Coupled Quantization with a calibration file ({@link CqCalibration}).
 *
 * <p>Block layout (one layer, one KV head, {@code B} slots): key codes {@code [B][ceil(d/c · c·bits / 8)]},
 * value codes of the same size, and — only in blocks that hold sink positions — the sinks' keys and
 * values in fp16. With {@code window > 0} a block fills in fp16 and is sealed into codes once all its
 * tokens are more than {@code window} positions old (so between {@code window} and
 * {@code window + B − 1} recent tokens are in fp16).
 *
 * <p>Keys are scored through per-query tables when they are stored after RoPE ({@code rope=post}):
 * {@code T[g][j] = q_g · C_{g,j}} is built once per query (and reused for every block the query reads)
 * and a token's score is the sum of its groups' entries. Pre-RoPE keys (default) are gathered from
 * their centroids and rotated per token; values are always gathered.
 */
public final class CqFormat implements KvStorageFormat, CalibratedFormat {

    private final Params params;
    private final String file;
    private final ModelIdentity identity;
    private final CqCalibration cal;
    private final int window;

    public CqFormat(Params params) {
        this.params = params;
        this.file = params.getString("calib");
        CalibrationFile.Loaded loaded = CalibrationCache.load(file, QuantMethod.CQ);
        this.cal = (CqCalibration) loaded.calibration();
        this.identity = loaded.identity();
        CqConfig c = cal.config();
        QuantParamSpecs.mustMatch(params, "c", c.channels(), file);
        QuantParamSpecs.mustMatch(params, "bits", c.bits(), file);
        QuantParamSpecs.mustMatch(params, "fisher", c.fisher(), file);
        QuantParamSpecs.mustMatch(params, "sinks", c.sinks(), file);
        QuantParamSpecs.mustMatch(params, "rope", c.postRope() ? "post" : "pre", file);
        // The fp16 window does not change the centroids: it may differ from the calibration's.
        Object w = QuantParamSpecs.given(params, "window");
        this.window = w == null ? c.window() : (Integer) w;
    }

    @Override
    public String calibrationFile() {
        return file;
    }

    @Override
    public ModelIdentity calibratedFor() {
        return identity;
    }

    @Override
    public Params params() {
        return params;
    }

    public CqCalibration calibration() {
        return cal;
    }

    @Override
    public FormatBinding bind(KvGeometry geometry, int blockTokens) {
        CalibrationCache.checkGeometry(cal, file, geometry);
        int sinks = cal.config().sinks();
        KeyFrame frame = cal.config().postRope() ? KeyFrame.POST_ROPE : KeyFrame.PRE_ROPE;
        Map<Integer, BlockCodec> coded = new ConcurrentHashMap<>();
        Map<Integer, BlockCodec> open = new ConcurrentHashMap<>();
        Map<BlockCodec, Integer> fp16SlotsOf = new ConcurrentHashMap<>();
        return new FormatBinding() {
            @Override
            public KvGeometry geometry() {
                return geometry;
            }

            @Override
            public int blockTokens() {
                return blockTokens;
            }

            private BlockCodec codes(int n) {
                return coded.computeIfAbsent(n, k -> new Codec(cal, geometry.headDim(), blockTokens, k, frame));
            }

            @Override
            public BlockCodec appendCodec(int layer, int firstPosition) {
                int n = Math.max(0, Math.min(blockTokens, sinks - firstPosition));
                if (window == 0) return codes(n);
                return open.computeIfAbsent(n, k -> {
                    BlockCodec fp16 = new FullPrecisionFormat.Fp16Codec(geometry.headDim(), blockTokens, frame);
                    fp16SlotsOf.put(fp16, k);
                    return fp16;
                });
            }

            @Override
            public int recentTokens() {
                return window == 0 ? Integer.MAX_VALUE : window;
            }

            @Override
            public BlockCodec sealedCodec(int layer, BlockCodec current) {
                Integer n = fp16SlotsOf.get(current);
                if (n == null || n == blockTokens) return current;
                return codes(n);
            }
        };
    }

    /** Centroid codes of one block, with {@code fp16Slots} leading sink slots in fp16. */
    static final class Codec extends AbstractBlockCodec {

        private final CqCalibration cal;
        private final int c;
        private final int bits;
        private final int centroids;
        private final int groupsPerHead;
        private final int sinks;
        private final int fp16Slots;
        private final int rowBytes;
        private final long valuesAt;
        private final long sinkAt;
        private final long bytes;

        Codec(CqCalibration cal, int headDim, int blockTokens, int fp16Slots, KeyFrame frame) {
            super(headDim, blockTokens, frame);
            CqConfig cfg = cal.config();
            this.cal = cal;
            this.c = cfg.channels();
            this.bits = cfg.codeBits();
            this.centroids = cfg.centroids();
            this.groupsPerHead = headDim / c;
            this.sinks = cfg.sinks();
            this.fp16Slots = fp16Slots;
            this.rowBytes = BitPacking.bytesFor(groupsPerHead, bits);
            this.valuesAt = (long) blockTokens * rowBytes;
            this.sinkAt = 2 * valuesAt;
            this.bytes = sinkAt + 4L * headDim * fp16Slots;
        }

        @Override
        public String name() {
            return "cq" + c + "c" + bits + "b" + (fp16Slots > 0 ? "+" + fp16Slots + "sink" : "");
        }

        @Override
        public long blockBytes() {
            return bytes;
        }

        @Override
        public boolean perToken() {
            return true;
        }

        private boolean isSink(int slot, int position) {
            return position >= 0 && position < sinks && slot < fp16Slots;
        }

        private long sinkKeyAt(int slot) {
            return sinkAt + 4L * headDim * slot;
        }

        @Override
        public void write(MemorySegment block, int slot, KvRows rows, int row, int kvHead, BlockContext ctx) {
            int off = rows.offset(row, kvHead);
            encodeSlot(block, slot, keySource(rows), off, rows.values(), off, kvHead, ctx.layer(), rows.position(row));
        }

        private void encodeSlot(MemorySegment block, int slot, float[] k, int kOff, float[] v, int vOff, int kvHead, int layer, int pos) {
            if (pos < sinks) {
                if (slot >= fp16Slots) throw new IllegalStateException("sink position " + pos + " landed in slot " + slot + " of a " + name() + " block");
                for (int i = 0; i < headDim; i++) {
                    block.set(ValueLayout.JAVA_SHORT_UNALIGNED, sinkKeyAt(slot) + 2L * i, Half.bits(k[kOff + i]));
                    block.set(ValueLayout.JAVA_SHORT_UNALIGNED, sinkKeyAt(slot) + 2L * (headDim + i), Half.bits(v[vOff + i]));
                }
                return;
            }
            for (int gl = 0; gl < groupsPerHead; gl++) {
                int g = kvHead * groupsPerHead + gl;
                BitPacking.put(block, (long) slot * rowBytes, gl, bits, cal.nearest(layer, true, g, k, kOff + gl * c));
                BitPacking.put(block, valuesAt + (long) slot * rowBytes, gl, bits, cal.nearest(layer, false, g, v, vOff + gl * c));
            }
        }

        @Override
        public void encodeBlock(MemorySegment block, float[] keys, float[] values, int slots, BlockContext ctx) {
            int[] pos = ctx.positions();
            for (int s = 0; s < slots; s++) {
                if (pos[s] >= 0) encodeSlot(block, s, keys, s * headDim, values, s * headDim, ctx.kvHead(), ctx.layer(), pos[s]);
            }
        }

        @Override
        public void copySlot(MemorySegment src, int srcSlot, MemorySegment dst, int dstSlot) {
            MemorySegment.copy(src, (long) srcSlot * rowBytes, dst, (long) dstSlot * rowBytes, rowBytes);
            MemorySegment.copy(src, valuesAt + (long) srcSlot * rowBytes, dst, valuesAt + (long) dstSlot * rowBytes, rowBytes);
            if (srcSlot < fp16Slots && dstSlot < fp16Slots) MemorySegment.copy(src, sinkKeyAt(srcSlot), dst, sinkKeyAt(dstSlot), 4L * headDim);
        }

        private void gather(float[] book, MemorySegment block, long rowAt, int kvHead, float[] dst, int off) {
            for (int gl = 0; gl < groupsPerHead; gl++) {
                int g = kvHead * groupsPerHead + gl;
                int code = BitPacking.get(block, rowAt, gl, bits);
                System.arraycopy(book, (g * centroids + code) * c, dst, off + gl * c, c);
            }
        }

        @Override
        public void decodeKey(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            if (isSink(slot, ctx.positions()[slot])) {
                for (int i = 0; i < headDim; i++) dst[off + i] = Half.value(block.get(ValueLayout.JAVA_SHORT_UNALIGNED, sinkKeyAt(slot) + 2L * i));
                return;
            }
            gather(cal.keyBook(ctx.layer()), block, (long) slot * rowBytes, ctx.kvHead(), dst, off);
        }

        @Override
        public void decodeValue(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            if (isSink(slot, ctx.positions()[slot])) {
                for (int i = 0; i < headDim; i++) {
                    dst[off + i] = Half.value(block.get(ValueLayout.JAVA_SHORT_UNALIGNED, sinkKeyAt(slot) + 2L * (headDim + i)));
                }
                return;
            }
            gather(cal.valueBook(ctx.layer()), block, valuesAt + (long) slot * rowBytes, ctx.kvHead(), dst, off);
        }

        @Override
        public void keyScores(MemorySegment block, int from, int to, float[] q, int qOff, int qStride, int nq,
                              float[] scores, int ld, BlockContext ctx) {
            if (keyFrame != KeyFrame.POST_ROPE) {
                super.keyScores(block, from, to, q, qOff, qStride, nq, scores, ld, ctx);
                return;
            }
            float[] table = Lut.table(this, ctx.layer(), ctx.kvHead(), q, qOff, qStride, nq, headDim, groupsPerHead * centroids, t -> {
                float[] book = cal.keyBook(ctx.layer());
                for (int i = 0; i < nq; i++) {
                    int qo = qOff + i * qStride;
                    for (int gl = 0; gl < groupsPerHead; gl++) {
                        int g = ctx.kvHead() * groupsPerHead + gl;
                        int tb = (i * groupsPerHead + gl) * centroids;
                        for (int j = 0; j < centroids; j++) {
                            int co = (g * centroids + j) * c;
                            float s = 0;
                            for (int e = 0; e < c; e++) s += q[qo + gl * c + e] * book[co + e];
                            t[tb + j] = s;
                        }
                    }
                }
            });
            int[] pos = ctx.positions();
            float[] k = null;
            for (int s = from; s < to; s++) {
                if (pos[s] < 0) {
                    for (int i = 0; i < nq; i++) scores[i * ld + s - from] = 0f;
                    continue;
                }
                if (isSink(s, pos[s])) {
                    if (k == null) k = new float[headDim];
                    decodeKey(block, s, k, 0, ctx);
                    for (int i = 0; i < nq; i++) {
                        float acc = 0;
                        for (int e = 0; e < headDim; e++) acc += q[qOff + i * qStride + e] * k[e];
                        scores[i * ld + s - from] = acc;
                    }
                    continue;
                }
                long at = (long) s * rowBytes;
                for (int i = 0; i < nq; i++) scores[i * ld + s - from] = 0f;
                for (int gl = 0; gl < groupsPerHead; gl++) {
                    int code = BitPacking.get(block, at, gl, bits);
                    for (int i = 0; i < nq; i++) scores[i * ld + s - from] += table[(i * groupsPerHead + gl) * centroids + code];
                }
            }
        }
    }

    /**
     * The last query·centroid table built on this thread: attention reads a KV head's blocks one after
     * another with the same queries, so the table is built once per query (a "step") and looked up by
     * every block. Keyed by codec, layer, head and the query values themselves.
     */
    static final class Lut {
        private static final ThreadLocal<Lut> LAST = new ThreadLocal<>();

        interface Fill {
            void fill(float[] table);
        }

        private Object owner;
        private int layer;
        private int kvHead;
        private int nq;
        private float[] q = new float[0];
        private float[] table = new float[0];

        static float[] table(Object owner, int layer, int kvHead, float[] q, int qOff, int qStride, int nq, int headDim,
                             int perQuery, Fill fill) {
            Lut lut = LAST.get();
            if (lut == null) {
                lut = new Lut();
                LAST.set(lut);
            }
            if (lut.owner == owner && lut.layer == layer && lut.kvHead == kvHead && lut.nq == nq && lut.sameQueries(q, qOff, qStride, headDim)) {
                return lut.table;
            }
            lut.owner = owner;
            lut.layer = layer;
            lut.kvHead = kvHead;
            lut.nq = nq;
            if (lut.q.length < nq * headDim) lut.q = new float[nq * headDim];
            for (int i = 0; i < nq; i++) System.arraycopy(q, qOff + i * qStride, lut.q, i * headDim, headDim);
            if (lut.table.length < nq * perQuery) lut.table = new float[nq * perQuery];
            fill.fill(lut.table);
            return lut.table;
        }

        private boolean sameQueries(float[] src, int qOff, int qStride, int headDim) {
            for (int i = 0; i < nq; i++) {
                for (int e = 0; e < headDim; e++) {
                    if (Float.floatToRawIntBits(q[i * headDim + e]) != Float.floatToRawIntBits(src[qOff + i * qStride + e])) return false;
                }
            }
            return true;
        }
    }
}
