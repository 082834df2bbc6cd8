package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.LayerKv;
import dev.kvserve.kvcache.format.AbstractBlockCodec;
import dev.kvserve.kvcache.format.BlockCodec;
import dev.kvserve.kvcache.format.BlockContext;
import dev.kvserve.kvcache.format.FormatBinding;
import dev.kvserve.kvcache.format.FormatState;
import dev.kvserve.kvcache.format.KeyFrame;
import dev.kvserve.kvcache.format.KvStorageFormat;
import dev.kvserve.kvcache.format.SideMemory;
import dev.kvserve.kvcache.policy.Params;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The {@code aqua} storage format: AQUA-KV with a calibration file ({@link AquaCalibration}).
 *
 * <p>Write path: tokens are stored in fp16 (pre-RoPE) blocks. When a token is written, its whole
 * {@code Hkv·d} key and value are also encoded at once, the way the paper's chunk encoder does it: the
 * key is predicted from the previous layer's reconstructed key of the same token, the residual is
 * Hadamard-rotated and quantized on the grid, and the reconstruction feeds the value predictor (with
 * the previous layer's reconstructed value) and the next layer. Those codes wait in budget-counted
 * side memory until the token's block is more than {@code buffer} positions old; then the block is
 * sealed and takes them over. Blocks with positions below {@code prefix} keep those slots in fp16.
 *
 * <p>Read path: decoding layer {@code l} needs layer {@code l−1}'s reconstruction of every cached
 * token. {@link AquaState#beforeAttention} rebuilds it layer by layer each step (layers must be read in
 * order, as the decoder does) and holds the current and previous layer's reconstruction as a transient
 * workspace, as the reference implementation recomputes on every read. Sealed block layout (one layer,
 * one KV head, {@code B} slots): per slot the key's codes and binary16 group norms, then the value's,
 * then the fp16 prefix region. Eviction rules that drop or merge tokens are not supported with this
 * format (predictions need every layer to hold the same tokens).
 */
public final class AquaFormat implements KvStorageFormat, CalibratedFormat {

    private final Params params;
    private final String file;
    private final ModelIdentity identity;
    private final AquaCalibration cal;
    private final int prefix;
    private final int buffer;

    public AquaFormat(Params params) {
        this.params = params;
        this.file = params.getString("calib");
        CalibrationFile.Loaded loaded = CalibrationCache.load(file, QuantMethod.AQUA);
        this.cal = (AquaCalibration) loaded.calibration();
        this.identity = loaded.identity();
        AquaConfig c = cal.config();
        QuantParamSpecs.mustMatch(params, "bits", c.bits(), file);
        QuantParamSpecs.mustMatch(params, "dim", c.gridDim(), file);
        QuantParamSpecs.mustMatch(params, "first", c.firstBits() == 0 ? "fp16" : String.valueOf(c.firstBits()), file);
        // Prefix and buffer sizes are serving choices: calibration used every token.
        Object p = QuantParamSpecs.given(params, "prefix"), b = QuantParamSpecs.given(params, "buffer");
        this.prefix = p == null ? c.prefix() : (Integer) p;
        this.buffer = b == null ? c.buffer() : (Integer) b;
    }

    @Override
    public String calibrationFile() {
        return file;
    }

    @Override
    public ModelIdentity calibratedFor() {
        return identity;
    }

    /**
     * AQUA-KV predicts a token's keys and values at one layer from the same token at the layer
     * before; an eviction rule keeps different tokens at different layers (and D2O merges them), so
     * the predictors would read tokens that are gone.
     */
    @Override
    public void checkComposition(dev.kvserve.kvcache.KvCachePolicy policy) {
        if (policy.eviction().isPresent()) {
            throw new IllegalArgumentException("aqua cannot run with an eviction rule ('" + policy.eviction().get().params().method()
                    + "'): its cross-layer predictors need every layer to keep the same tokens");
        }
    }

    @Override
    public Params params() {
        return params;
    }

    public AquaCalibration calibration() {
        return cal;
    }

    @Override
    public FormatBinding bind(KvGeometry geometry, int blockTokens) {
        CalibrationCache.checkGeometry(cal, file, geometry);
        Map<Integer, BufferCodec> open = new ConcurrentHashMap<>();
        Map<String, SealedCodec> sealed = new ConcurrentHashMap<>();
        return new FormatBinding() {
            @Override
            public KvGeometry geometry() {
                return geometry;
            }

            @Override
            public int blockTokens() {
                return blockTokens;
            }

            @Override
            public BlockCodec appendCodec(int layer, int firstPosition) {
                int n = Math.max(0, Math.min(blockTokens, prefix - firstPosition));
                return open.computeIfAbsent(n, k -> new BufferCodec(cal, geometry.headDim(), blockTokens, k, prefix));
            }

            @Override
            public int recentTokens() {
                return buffer;
            }

            @Override
            public BlockCodec sealedCodec(int layer, BlockCodec current) {
                if (!(current instanceof BufferCodec b) || b.fp16Slots == blockTokens) return current;
                boolean first = layer == 0;
                return sealed.computeIfAbsent(first + "/" + b.fp16Slots,
                        k -> new SealedCodec(cal, geometry, blockTokens, b.fp16Slots, prefix, first));
            }

            @Override
            public FormatState openSequence(SideMemory side) {
                return new AquaState(cal, geometry, side, prefix);
            }
        };
    }

    /** Bytes of one head's share of a key (or value) in a sealed block of {@code layer}: its codes, or fp16 values. */
    static int headBytes(AquaCalibration cal, int layer, int headDim) {
        HiggsQuantizer q = cal.quantizer(layer);
        return q == null ? 2 * headDim : BitPacking.bytesFor(headDim / q.grid().dim(), q.codeBits());
    }

    /**
     * Per sequence: the codes of tokens not sealed yet and the group norms of every token (side
     * memory, by position), the reconstructions of the step being written (previous layer → this
     * layer), and the read-side reconstructions of the current and previous layer.
     *
     * <p>A Hadamard group may span several heads, so a head's codes are a slice of the rotated vector
     * and decode only together with the other heads' slices: {@link #beforeAttention} collects every
     * head's codes of a layer (through the cache's normal reads, which hand the codes over), rotates
     * back whole vectors, adds the predictions, and serves later reads of the layer from that result.
     */
    static final class AquaState implements FormatState {
        private enum Phase { KEYS, VALUES, READY }

        private final AquaCalibration cal;
        private final KvGeometry geo;
        private final int prefix;
        private final int kvDim;
        private final int headDim;
        private final SideArray[] pending;
        private final SideArray[] norms;
        private final int[] rowBytes;
        private final int[] written;
        // write side: reconstructions of the step's tokens, previous and current layer
        private int writeLayer = -1;
        private int writeFirst;
        private float[] writeK, writeV, prevWriteK, prevWriteV;
        // read side
        private int readLayer = -1;
        private Phase phase = Phase.READY;
        private float[] curK = new float[0], curV = new float[0], prevK = new float[0], prevV = new float[0];
        private int[] stash = new int[0];
        private boolean[] stashed = new boolean[0];

        AquaState(AquaCalibration cal, KvGeometry geo, SideMemory side, int prefix) {
            this.cal = cal;
            this.geo = geo;
            this.prefix = prefix;
            this.kvDim = geo.kvDim();
            this.headDim = geo.headDim();
            this.pending = new SideArray[geo.layers()];
            this.norms = new SideArray[geo.layers()];
            this.rowBytes = new int[geo.layers()];
            this.written = new int[geo.layers()];
            for (int l = 0; l < geo.layers(); l++) {
                rowBytes[l] = 2 * geo.kvHeads() * headBytes(cal, l, headDim);
                pending[l] = new SideArray(side, rowBytes[l]);
                HiggsQuantizer q = cal.quantizer(l);
                norms[l] = q == null ? null : new SideArray(side, 4 * q.groups());
            }
        }

        private AquaState(AquaState src, SideMemory side) {
            this(src.cal, src.geo, side, src.prefix);
            for (int l = 0; l < geo.layers(); l++) {
                pending[l] = src.pending[l].copyTo(side);
                if (src.norms[l] != null) norms[l] = src.norms[l].copyTo(side);
            }
            System.arraycopy(src.written, 0, written, 0, written.length);
            writeLayer = src.writeLayer;
            writeFirst = src.writeFirst;
            writeK = src.writeK == null ? null : src.writeK.clone();
            writeV = src.writeV == null ? null : src.writeV.clone();
            prevWriteK = src.prevWriteK == null ? null : src.prevWriteK.clone();
            prevWriteV = src.prevWriteV == null ? null : src.prevWriteV.clone();
        }

        @Override
        public FormatState fork(SideMemory side) {
            return new AquaState(this, side);
        }

        /** Encodes a whole token of {@code layer} (all heads) into its pending codes and norms; keeps its reconstruction. */
        void encodeToken(KvRows rows, int row, int layer) {
            int pos = rows.position(row);
            // A prefix fork re-appends after truncation: pending codes at and after pos are stale.
            written[layer] = pos + 1;
            if (row == 0 || writeLayer != layer || writeFirst != rows.firstPosition()) startWrite(rows, layer);
            int r = pos - writeFirst;
            float[] k = rows.keysPreRope(), v = rows.values();
            int off = rows.rowOffset(row);
            float[] predK = new float[kvDim], predV = new float[kvDim];
            if (layer > 0) cal.keyPredictor(layer).apply(prevWriteK, r * kvDim, predK, 0);
            MemorySegment dst;
            try {
                dst = pending[layer].element(pos);
            } catch (IndexOutOfBoundsException e) {
                throw new IllegalStateException("AQUA-KV cannot re-append position " + pos + " of layer " + layer
                        + ": its block was already sealed (a fork inside the compressed part of a sequence)", e);
            }
            MemorySegment groupNorms = norms[layer] == null ? null : norms[layer].element(pos);
            encode(layer, k, off, predK, dst, 0, groupNorms, 0, writeK, r * kvDim);
            if (layer > 0) {
                float[] in = new float[2 * kvDim];
                System.arraycopy(writeK, r * kvDim, in, 0, kvDim);
                System.arraycopy(prevWriteV, r * kvDim, in, kvDim, kvDim);
                cal.valuePredictor(layer).apply(in, 0, predV, 0);
            }
            encode(layer, v, off, predV, dst, rowBytes[layer] / 2, groupNorms, 1, writeV, r * kvDim);
        }

        private void startWrite(KvRows rows, int layer) {
            if (layer > 0 && !(writeLayer == layer - 1 && writeFirst == rows.firstPosition() && writeK.length == rows.rows() * kvDim)) {
                throw new IllegalStateException("AQUA-KV writes a step's layers in order: layer " + layer
                        + " came before layer " + (layer - 1) + " of the same tokens");
            }
            prevWriteK = writeK;
            prevWriteV = writeV;
            writeK = new float[rows.rows() * kvDim];
            writeV = new float[rows.rows() * kvDim];
            writeLayer = layer;
            writeFirst = rows.firstPosition();
        }

        /**
         * Codes of (x − prediction) into dst[at..], one slice per head; group norms into
         * normsDst (part 0 keys, 1 values); the reconstruction into rec[recOff..].
         */
        private void encode(int layer, float[] x, int off, float[] pred, MemorySegment dst, long at,
                            MemorySegment normsDst, int part, float[] rec, int recOff) {
            HiggsQuantizer q = cal.quantizer(layer);
            int hb = headBytes(cal, layer, headDim);
            if (q == null) {
                for (int i = 0; i < kvDim; i++) {
                    short bits = Half.bits(x[off + i]);
                    dst.set(ValueLayout.JAVA_SHORT_UNALIGNED, at + 2L * i, bits);
                    rec[recOff + i] = Half.value(bits);
                }
                return;
            }
            float[] res = new float[kvDim];
            for (int i = 0; i < kvDim; i++) res[i] = x[off + i] - pred[i];
            int[] codes = new int[q.codes()];
            short[] groupNorms = new short[q.groups()];
            q.quantize(res, 0, codes, groupNorms);
            int perHead = headDim / q.grid().dim();
            for (int h = 0; h < geo.kvHeads(); h++) {
                for (int i = 0; i < perHead; i++) BitPacking.put(dst, at + (long) h * hb, i, q.codeBits(), codes[h * perHead + i]);
            }
            for (int g = 0; g < groupNorms.length; g++) {
                normsDst.set(ValueLayout.JAVA_SHORT_UNALIGNED, 2L * (part * groupNorms.length + g), groupNorms[g]);
            }
            float[] back = new float[kvDim];
            q.dequantize(codes, groupNorms, back, 0);
            for (int i = 0; i < kvDim; i++) rec[recOff + i] = pred[i] + back[i];
        }

        /** Pending codes of one head (key: part 0, value: part 1) of a token, copied into a sealed block. */
        void copyPending(int layer, int position, int kvHead, int part, MemorySegment block, long at) {
            if (position < prefix || position >= written[layer]) {
                throw new IllegalStateException("AQUA-KV has no codes for position " + position + " of layer " + layer);
            }
            int hb = headBytes(cal, layer, headDim);
            MemorySegment src = pending[layer].element(position);
            MemorySegment.copy(src, (long) part * (rowBytes[layer] / 2) + (long) kvHead * hb, block, at, hb);
        }

        /** Gives back the pending codes below {@code position} (all heads have sealed them). */
        void sealedThrough(int layer, int position) {
            pending[layer].dropBelow(position);
        }

        @Override
        public void beforeAttention(int layer, LayerKv kv) {
            if (layer > 0 && !(readLayer == layer - 1 && phase == Phase.READY)) {
                throw new IllegalStateException("AQUA-KV reads layers in order within a step: layer " + layer
                        + " before layer " + (layer - 1));
            }
            int n = 0;
            for (int h = 0; h < geo.kvHeads(); h++) {
                for (int s = 0; s < kv.slots(h); s++) n = Math.max(n, kv.position(h, s) + 1);
            }
            float[] oldK = prevK, oldV = prevV;
            prevK = curK;
            prevV = curV;
            curK = oldK.length >= n * kvDim ? oldK : new float[n * kvDim];
            curV = oldV.length >= n * kvDim ? oldV : new float[n * kvDim];
            readLayer = layer;
            rebuild(kv, layer, n, Phase.KEYS, curK);
            rebuild(kv, layer, n, Phase.VALUES, curV);
            phase = Phase.READY;
        }

        /**
         * Reads every live slot of the layer: fp16 slots decode directly; sealed slots hand their codes
         * to {@link #stash}. Then each stashed token is rotated back whole and its prediction added.
         */
        private void rebuild(LayerKv kv, int layer, int n, Phase what, float[] out) {
            HiggsQuantizer q = cal.quantizer(layer);
            int codes = q == null ? 0 : q.codes();
            if (stash.length < n * codes) stash = new int[n * codes];
            if (stashed.length < n) stashed = new boolean[n];
            java.util.Arrays.fill(stashed, 0, n, false);
            phase = what;
            float[] tmp = new float[headDim];
            for (int h = 0; h < geo.kvHeads(); h++) {
                for (int s = 0; s < kv.slots(h); s++) {
                    int p = kv.position(h, s);
                    if (p < 0) continue;
                    if (what == Phase.KEYS) kv.readKeyPreRope(h, s, tmp, 0);
                    else kv.readValue(h, s, tmp, 0);
                    if (!stashed[p]) System.arraycopy(tmp, 0, out, p * kvDim + h * headDim, headDim);
                }
            }
            int groups = q == null ? 0 : q.groups();
            int[] tokenCodes = new int[codes];
            short[] groupNorms = new short[groups];
            float[] in = new float[2 * kvDim];
            float[] res = new float[kvDim];
            for (int p = 0; p < n; p++) {
                if (!stashed[p]) continue;
                int o = p * kvDim;
                if (layer == 0) {
                    java.util.Arrays.fill(out, o, o + kvDim, 0f);
                } else if (what == Phase.KEYS) {
                    cal.keyPredictor(layer).apply(prevK, o, out, o);
                } else {
                    System.arraycopy(curK, o, in, 0, kvDim);
                    System.arraycopy(prevV, o, in, kvDim, kvDim);
                    cal.valuePredictor(layer).apply(in, 0, out, o);
                }
                if (q == null) {
                    System.arraycopy(stashHalf, o, res, 0, kvDim);
                } else {
                    System.arraycopy(stash, p * codes, tokenCodes, 0, codes);
                    MemorySegment nm = norms[layer].element(p);
                    int part = what == Phase.KEYS ? 0 : 1;
                    for (int g = 0; g < groups; g++) groupNorms[g] = nm.get(ValueLayout.JAVA_SHORT_UNALIGNED, 2L * (part * groups + g));
                    q.dequantize(tokenCodes, groupNorms, res, 0);
                }
                for (int i = 0; i < kvDim; i++) out[o + i] += res[i];
            }
        }

        private float[] stashHalf = new float[0];

        /** A sealed slot's codes (or fp16 residuals of an fp16 first layer), handed over during {@link #rebuild}. */
        void stash(int layer, int position, int kvHead, MemorySegment block, long at) {
            HiggsQuantizer q = cal.quantizer(layer);
            stashed[position] = true;
            if (q == null) {
                if (stashHalf.length < stashed.length * kvDim) stashHalf = new float[stashed.length * kvDim];
                for (int i = 0; i < headDim; i++) {
                    stashHalf[position * kvDim + kvHead * headDim + i] = Half.value(block.get(ValueLayout.JAVA_SHORT_UNALIGNED, at + 2L * i));
                }
                return;
            }
            int perHead = headDim / q.grid().dim();
            for (int i = 0; i < perHead; i++) stash[position * q.codes() + kvHead * perHead + i] = BitPacking.get(block, at, i, q.codeBits());
        }

        /** Key of a sealed slot: the rebuilt value, or its codes handed over while the layer is being rebuilt. */
        void decodeKey(int layer, int position, int kvHead, MemorySegment block, long at, float[] dst, int off) {
            decode(layer, position, kvHead, block, at, dst, off, Phase.KEYS, curK);
        }

        void decodeValue(int layer, int position, int kvHead, MemorySegment block, long at, float[] dst, int off) {
            decode(layer, position, kvHead, block, at, dst, off, Phase.VALUES, curV);
        }

        private void decode(int layer, int position, int kvHead, MemorySegment block, long at, float[] dst, int off,
                            Phase what, float[] rebuilt) {
            if (readLayer == layer && (phase == Phase.READY || (what == Phase.KEYS && phase == Phase.VALUES))) {
                System.arraycopy(rebuilt, position * kvDim + kvHead * headDim, dst, off, headDim);
                return;
            }
            if (readLayer == layer && phase == what) {
                stash(layer, position, kvHead, block, at);
                java.util.Arrays.fill(dst, off, off + headDim, 0f);
                return;
            }
            throw new IllegalStateException("AQUA-KV decodes layer " + layer + " only right after the attention of the same step"
                    + " has rebuilt it (layers are read in order)");
        }
    }


    /** The fp16 buffer a token waits in before its block is sealed; encodes its AQUA codes on write. */
    static final class BufferCodec extends AbstractBlockCodec {
        final int fp16Slots;
        private final int prefix;
        private final long rowBytes;

        BufferCodec(AquaCalibration cal, int headDim, int blockTokens, int fp16Slots, int prefix) {
            super(headDim, blockTokens, KeyFrame.PRE_ROPE);
            this.fp16Slots = fp16Slots;
            this.prefix = prefix;
            this.rowBytes = 2L * headDim;
        }

        @Override
        public String name() {
            return "aqua-buffer" + (fp16Slots > 0 ? "+" + fp16Slots + "prefix" : "");
        }

        @Override
        public long blockBytes() {
            return 2 * blockTokens * rowBytes;
        }

        @Override
        public boolean perToken() {
            return true;
        }

        @Override
        public void write(MemorySegment block, int slot, KvRows rows, int row, int kvHead, BlockContext ctx) {
            int pos = rows.position(row);
            if (pos >= prefix && rows.memo(row) == null) {
                if (kvHead != 0) {
                    throw new UnsupportedOperationException("AQUA-KV cannot re-write one head of a cached token (eviction rules that merge tokens)");
                }
                ((AquaState) ctx.formatState()).encodeToken(rows, row, ctx.layer());
                rows.setMemo(row, Boolean.TRUE);
            }
            int off = rows.offset(row, kvHead);
            for (int i = 0; i < headDim; i++) {
                block.set(ValueLayout.JAVA_SHORT_UNALIGNED, slot * rowBytes + 2L * i, Half.bits(rows.keysPreRope()[off + i]));
                block.set(ValueLayout.JAVA_SHORT_UNALIGNED, (blockTokens + slot) * rowBytes + 2L * i, Half.bits(rows.values()[off + i]));
            }
        }

        @Override
        public void encodeBlock(MemorySegment block, float[] keys, float[] values, int slots, BlockContext ctx) {
            for (int s = 0; s < slots; s++) {
                for (int i = 0; i < headDim; i++) {
                    block.set(ValueLayout.JAVA_SHORT_UNALIGNED, s * rowBytes + 2L * i, Half.bits(keys[s * headDim + i]));
                    block.set(ValueLayout.JAVA_SHORT_UNALIGNED, (blockTokens + s) * rowBytes + 2L * i, Half.bits(values[s * headDim + i]));
                }
            }
        }

        @Override
        public void copySlot(MemorySegment src, int srcSlot, MemorySegment dst, int dstSlot) {
            MemorySegment.copy(src, srcSlot * rowBytes, dst, dstSlot * rowBytes, rowBytes);
            MemorySegment.copy(src, (blockTokens + srcSlot) * rowBytes, dst, (blockTokens + dstSlot) * rowBytes, rowBytes);
        }

        @Override
        public void decodeKey(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            for (int i = 0; i < headDim; i++) dst[off + i] = Half.value(block.get(ValueLayout.JAVA_SHORT_UNALIGNED, slot * rowBytes + 2L * i));
        }

        @Override
        public void decodeValue(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            for (int i = 0; i < headDim; i++) {
                dst[off + i] = Half.value(block.get(ValueLayout.JAVA_SHORT_UNALIGNED, (blockTokens + slot) * rowBytes + 2L * i));
            }
        }
    }

    /** A sealed block: the key and value codes of each slot, plus fp16 prefix slots. */
    static final class SealedCodec extends AbstractBlockCodec {
        private final int layerKind;
        private final int fp16Slots;
        private final int prefix;
        private final int kvHeads;
        private final int headBytes;
        private final long prefixAt;
        private final long bytes;

        SealedCodec(AquaCalibration cal, KvGeometry geo, int blockTokens, int fp16Slots, int prefix, boolean firstLayer) {
            super(geo.headDim(), blockTokens, KeyFrame.PRE_ROPE);
            this.layerKind = firstLayer ? 0 : 1;
            this.fp16Slots = fp16Slots;
            this.prefix = prefix;
            this.kvHeads = geo.kvHeads();
            this.headBytes = headBytes(cal, layerKind, headDim);
            this.prefixAt = 2L * blockTokens * headBytes;
            this.bytes = prefixAt + 4L * headDim * fp16Slots;
        }

        @Override
        public String name() {
            return "aqua" + (layerKind == 0 ? "-first" : "") + (fp16Slots > 0 ? "+" + fp16Slots + "prefix" : "");
        }

        @Override
        public long blockBytes() {
            return bytes;
        }

        @Override
        public boolean perToken() {
            return true;
        }

        private long keyAt(int slot) {
            return 2L * slot * headBytes;
        }

        private boolean isPrefix(int slot, int position) {
            return position >= 0 && position < prefix && slot < fp16Slots;
        }

        @Override
        public void write(MemorySegment block, int slot, KvRows rows, int row, int kvHead, BlockContext ctx) {
            throw new UnsupportedOperationException("an AQUA-KV block is sealed as a whole from its fp16 buffer");
        }

        @Override
        public void encodeBlock(MemorySegment block, float[] keys, float[] values, int slots, BlockContext ctx) {
            AquaState state = (AquaState) ctx.formatState();
            int[] pos = ctx.positions();
            int maxPos = -1;
            for (int s = 0; s < slots; s++) {
                if (pos[s] < 0) continue;
                maxPos = Math.max(maxPos, pos[s]);
                if (isPrefix(s, pos[s])) {
                    long at = prefixAt + 4L * headDim * s;
                    for (int i = 0; i < headDim; i++) {
                        block.set(ValueLayout.JAVA_SHORT_UNALIGNED, at + 2L * i, Half.bits(keys[s * headDim + i]));
                        block.set(ValueLayout.JAVA_SHORT_UNALIGNED, at + 2L * (headDim + i), Half.bits(values[s * headDim + i]));
                    }
                    continue;
                }
                state.copyPending(ctx.layer(), pos[s], ctx.kvHead(), 0, block, keyAt(s));
                state.copyPending(ctx.layer(), pos[s], ctx.kvHead(), 1, block, keyAt(s) + headBytes);
            }
            if (ctx.kvHead() == kvHeads - 1 && maxPos >= 0) state.sealedThrough(ctx.layer(), maxPos + 1);
        }

        @Override
        public void copySlot(MemorySegment src, int srcSlot, MemorySegment dst, int dstSlot) {
            MemorySegment.copy(src, keyAt(srcSlot), dst, keyAt(dstSlot), 2L * headBytes);
            if (srcSlot < fp16Slots && dstSlot < fp16Slots) {
                MemorySegment.copy(src, prefixAt + 4L * headDim * srcSlot, dst, prefixAt + 4L * headDim * dstSlot, 4L * headDim);
            }
        }

        @Override
        public void decodeKey(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            int pos = ctx.positions()[slot];
            if (isPrefix(slot, pos)) {
                long at = prefixAt + 4L * headDim * slot;
                for (int i = 0; i < headDim; i++) dst[off + i] = Half.value(block.get(ValueLayout.JAVA_SHORT_UNALIGNED, at + 2L * i));
                return;
            }
            ((AquaState) ctx.formatState()).decodeKey(ctx.layer(), pos, ctx.kvHead(), block, keyAt(slot), dst, off);
        }

        @Override
        public void decodeValue(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            int pos = ctx.positions()[slot];
            if (isPrefix(slot, pos)) {
                long at = prefixAt + 4L * headDim * slot + 2L * headDim;
                for (int i = 0; i < headDim; i++) dst[off + i] = Half.value(block.get(ValueLayout.JAVA_SHORT_UNALIGNED, at + 2L * i));
                return;
            }
            ((AquaState) ctx.formatState()).decodeValue(ctx.layer(), pos, ctx.kvHead(), block, keyAt(slot) + headBytes, dst, off);
        }
    }
}
