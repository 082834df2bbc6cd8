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
public final class AquaFormat implements KvStorageFormat {

    private final Params params;
    private final String file;
    private final AquaCalibration cal;
    private final int prefix;
    private final int buffer;

    public AquaFormat(Params params) {
        this.params = params;
        this.file = params.getString("calib");
        this.cal = (AquaCalibration) CalibrationCache.load(file, QuantMethod.AQUA).calibration();
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

    /** Bytes of one head's key (or value) codes and norms in {@code layer}. */
    static int headBytes(AquaCalibration cal, int layer, int headDim) {
        HiggsQuantizer q = cal.headQuantizer(layer);
        return q == null ? 2 * headDim : q.bytesPerVector();
    }

    /**
     * Per sequence: the codes of tokens not sealed yet (side memory, by position), the reconstructions
     * of the step being written (previous layer → this layer), and the read-side reconstructions of the
     * current and previous layer.
     */
    static final class AquaState implements FormatState {
        private final AquaCalibration cal;
        private final KvGeometry geo;
        private final SideMemory side;
        private final int prefix;
        private final int kvDim;
        private final int headDim;
        private final SideArray[] pending;
        private final int[] rowBytes;
        private final int[] written;
        // write side: reconstructions of the step's tokens, previous and current layer
        private int writeLayer = -1;
        private int writeFirst;
        private float[] writeK, writeV, prevWriteK, prevWriteV;
        // read side
        private int readLayer = -1;
        private boolean readReady;
        private float[] curK = new float[0], curV = new float[0], prevK = new float[0], prevV = new float[0];

        AquaState(AquaCalibration cal, KvGeometry geo, SideMemory side, int prefix) {
            this.cal = cal;
            this.geo = geo;
            this.side = side;
            this.prefix = prefix;
            this.kvDim = geo.kvDim();
            this.headDim = geo.headDim();
            this.pending = new SideArray[geo.layers()];
            this.rowBytes = new int[geo.layers()];
            this.written = new int[geo.layers()];
            for (int l = 0; l < geo.layers(); l++) {
                rowBytes[l] = 2 * geo.kvHeads() * headBytes(cal, l, headDim);
                pending[l] = new SideArray(side, rowBytes[l]);
            }
        }

        private AquaState(AquaState src, SideMemory side) {
            this(src.cal, src.geo, side, src.prefix);
            for (int l = 0; l < geo.layers(); l++) pending[l] = src.pending[l].copyTo(side);
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

        /** Encodes a whole token of {@code layer} (all heads) into its pending codes; keeps its reconstruction. */
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
            encode(layer, k, off, predK, dst, 0, writeK, r * kvDim);
            if (layer > 0) {
                float[] in = new float[2 * kvDim];
                System.arraycopy(writeK, r * kvDim, in, 0, kvDim);
                System.arraycopy(prevWriteV, r * kvDim, in, kvDim, kvDim);
                cal.valuePredictor(layer).apply(in, 0, predV, 0);
            }
            encode(layer, v, off, predV, dst, rowBytes[layer] / 2, writeV, r * kvDim);
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

        /** Codes of (x − prediction) per head into dst[at..], reconstruction into rec[recOff..]. */
        private void encode(int layer, float[] x, int off, float[] pred, MemorySegment dst, long at, float[] rec, int recOff) {
            HiggsQuantizer q = cal.headQuantizer(layer);
            int hb = headBytes(cal, layer, headDim);
            float[] res = new float[headDim], back = new float[headDim];
            for (int h = 0; h < geo.kvHeads(); h++) {
                long o = at + (long) h * hb;
                int base = h * headDim;
                if (q == null) {
                    for (int i = 0; i < headDim; i++) {
                        short bits = Half.bits(x[off + base + i]);
                        dst.set(ValueLayout.JAVA_SHORT_UNALIGNED, o + 2L * i, bits);
                        rec[recOff + base + i] = Half.value(bits);
                    }
                    continue;
                }
                for (int i = 0; i < headDim; i++) res[i] = x[off + base + i] - pred[base + i];
                int[] codes = new int[q.codes()];
                short[] norms = new short[q.groups()];
                q.quantize(res, 0, codes, norms);
                writeCodes(q, codes, norms, dst, o);
                q.dequantize(codes, norms, back, 0);
                for (int i = 0; i < headDim; i++) rec[recOff + base + i] = pred[base + i] + back[i];
            }
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
            if (layer > 0 && !(readLayer == layer - 1 && readReady)) {
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
            readReady = false;
            float[] tmp = new float[headDim];
            // Keys of every head first: the value predictor reads the whole reconstructed key.
            for (int h = 0; h < geo.kvHeads(); h++) {
                for (int s = 0; s < kv.slots(h); s++) {
                    int p = kv.position(h, s);
                    if (p < 0) continue;
                    kv.readKeyPreRope(h, s, tmp, 0);
                    System.arraycopy(tmp, 0, curK, p * kvDim + h * headDim, headDim);
                }
            }
            keysReady = true;
            for (int h = 0; h < geo.kvHeads(); h++) {
                for (int s = 0; s < kv.slots(h); s++) {
                    int p = kv.position(h, s);
                    if (p < 0) continue;
                    kv.readValue(h, s, tmp, 0);
                    System.arraycopy(tmp, 0, curV, p * kvDim + h * headDim, headDim);
                }
            }
            keysReady = false;
            readReady = true;
        }

        private boolean keysReady;

        /** Reconstruction of a sealed slot's key: cached after beforeAttention, else prediction + residual. */
        void decodeKey(int layer, int position, int kvHead, MemorySegment block, long at, float[] dst, int off) {
            if (readLayer == layer && (readReady || keysReady)) {
                System.arraycopy(curK, position * kvDim + kvHead * headDim, dst, off, headDim);
                return;
            }
            if (layer > 0) {
                cal.keyPredictor(layer).applyRows(previousKeys(layer, position), position * kvDim, kvHead * headDim, headDim, dst, off);
            } else {
                java.util.Arrays.fill(dst, off, off + headDim, 0f);
            }
            addResidual(layer, block, at, dst, off);
        }

        void decodeValue(int layer, int position, int kvHead, MemorySegment block, long at, float[] dst, int off) {
            if (readLayer == layer && readReady) {
                System.arraycopy(curV, position * kvDim + kvHead * headDim, dst, off, headDim);
                return;
            }
            if (layer > 0) {
                if (!(readLayer == layer && keysReady)) {
                    throw new IllegalStateException("AQUA-KV value of layer " + layer + " read before the layer's keys were rebuilt"
                            + " (attention reads layers in order)");
                }
                float[] prev = previousValues(layer, position);
                float[] in = new float[2 * kvDim];
                System.arraycopy(curK, position * kvDim, in, 0, kvDim);
                System.arraycopy(prev, position * kvDim, in, kvDim, kvDim);
                cal.valuePredictor(layer).applyRows(in, 0, kvHead * headDim, headDim, dst, off);
            } else {
                java.util.Arrays.fill(dst, off, off + headDim, 0f);
            }
            addResidual(layer, block, at, dst, off);
        }

        /** Layer l−1's reconstructed keys: the held previous layer while l is being rebuilt, or the current one. */
        private float[] previousKeys(int layer, int position) {
            return previous(layer, position, prevK, curK);
        }

        private float[] previousValues(int layer, int position) {
            return previous(layer, position, prevV, curV);
        }

        private float[] previous(int layer, int position, float[] prev, float[] cur) {
            float[] src = null;
            if (readLayer == layer && !readReady) src = prev;
            else if (readLayer == layer - 1 && readReady) src = cur;
            if (src == null || (position + 1) * kvDim > src.length) {
                throw new IllegalStateException("AQUA-KV decodes layer " + layer + " only right after layer " + (layer - 1)
                        + " of the same step (attention reads layers in order)");
            }
            return src;
        }

        private void addResidual(int layer, MemorySegment block, long at, float[] dst, int off) {
            HiggsQuantizer q = cal.headQuantizer(layer);
            if (q == null) {
                for (int i = 0; i < headDim; i++) dst[off + i] += Half.value(block.get(ValueLayout.JAVA_SHORT_UNALIGNED, at + 2L * i));
                return;
            }
            int[] codes = new int[q.codes()];
            short[] norms = new short[q.groups()];
            readCodes(q, block, at, codes, norms);
            float[] res = new float[headDim];
            q.dequantize(codes, norms, res, 0);
            for (int i = 0; i < headDim; i++) dst[off + i] += res[i];
        }
    }

    static void writeCodes(HiggsQuantizer q, int[] codes, short[] norms, MemorySegment dst, long at) {
        int bits = q.grid().codeBits();
        int codeBytes = BitPacking.bytesFor(q.codes(), bits);
        for (int i = 0; i < codes.length; i++) BitPacking.put(dst, at, i, bits, codes[i]);
        for (int g = 0; g < norms.length; g++) dst.set(ValueLayout.JAVA_SHORT_UNALIGNED, at + codeBytes + 2L * g, norms[g]);
    }

    static void readCodes(HiggsQuantizer q, MemorySegment src, long at, int[] codes, short[] norms) {
        int bits = q.grid().codeBits();
        int codeBytes = BitPacking.bytesFor(q.codes(), bits);
        for (int i = 0; i < codes.length; i++) codes[i] = BitPacking.get(src, at, i, bits);
        for (int g = 0; g < norms.length; g++) norms[g] = src.get(ValueLayout.JAVA_SHORT_UNALIGNED, at + codeBytes + 2L * g);
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
