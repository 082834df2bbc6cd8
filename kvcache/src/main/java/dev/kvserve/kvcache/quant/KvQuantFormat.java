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
import java.util.BitSet;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The {@code kvquant} storage format: KVQuant with a calibration file ({@link KvQuantCalibration}).
 *
 * <p>Block layout (one layer, one KV head, {@code B} slots, {@code d} channels, {@code b} bits):
 * key code rows {@code [B][ceil(d·b/8)]}, value code rows {@code [B][ceil(d·b/8)]}, then — only in
 * blocks that hold sink positions — the sinks' pre-RoPE keys and values in fp16
 * {@code [sinkSlots][2·d × fp16]}. Keys are pre-RoPE and rotated on read.
 *
 * <p>Values are quantized per token over the whole {@code Hkv·d} vector (outlier top/bottom-k, zero
 * point and range), as the paper does, so the per-token parts are kept once per token and layer in the
 * sequence's {@link KvQuantState}, in budget-counted side memory keyed by position: the value's binary16
 * zero point and half-range, and the outliers of keys and of values as compressed sparse rows (a 32-bit
 * pointer and a 16-bit count per token, a 16-bit channel and a binary16 value per outlier).
 *
 * <p>A token re-written for one head ({@code LayerKv.rewrite}, e.g. a merging eviction rule) is encoded
 * against that token's stored zero point and range; its values outside the range become outliers.
 */
public final class KvQuantFormat implements KvStorageFormat, CalibratedFormat {

    private final Params params;
    private final String file;
    private final ModelIdentity identity;
    private final KvQuantCalibration cal;

    public KvQuantFormat(Params params) {
        this.params = params;
        this.file = params.getString("calib");
        CalibrationFile.Loaded loaded = CalibrationCache.load(file, QuantMethod.KVQUANT);
        this.cal = (KvQuantCalibration) loaded.calibration();
        this.identity = loaded.identity();
        KvQuantConfig c = cal.config();
        QuantParamSpecs.mustMatch(params, "bits", c.bits(), file);
        QuantParamSpecs.mustMatch(params, "outliers", c.outliers(), file);
        QuantParamSpecs.mustMatch(params, "fisher", c.fisher(), file);
        QuantParamSpecs.mustMatch(params, "sinks", c.sinks(), file);
        QuantParamSpecs.mustMatch(params, "qnorm", c.qNorm(), file);
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

    public KvQuantCalibration calibration() {
        return cal;
    }

    @Override
    public FormatBinding bind(KvGeometry geometry, int blockTokens) {
        CalibrationCache.checkGeometry(cal, file, geometry);
        int sinks = cal.config().sinks();
        Map<Integer, Codec> codecs = new ConcurrentHashMap<>();
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
                int fp16Slots = Math.max(0, Math.min(blockTokens, sinks - firstPosition));
                return codecs.computeIfAbsent(fp16Slots, n -> new Codec(cal, geometry.headDim(), blockTokens, n));
            }

            @Override
            public FormatState openSequence(SideMemory side) {
                return new KvQuantState(side, geometry.layers(), cal.config().outliers() > 0);
            }
        };
    }

    /** Per sequence: the sparse outlier stores of every layer, keys and values. */
    static final class KvQuantState implements FormatState {
        final OutlierStore[] keys;
        final OutlierStore[] values;
        /** Per layer and position: the value's binary16 zero point and half-range. */
        final SideArray[] scales;
        /** Per layer, 1 + the highest position written: a write below it re-writes a token. */
        private final int[] written;
        /** Per layer, {@code written} when dead positions were last looked for. */
        private final int[] scanned;
        static final int RESCAN_POSITIONS = 16;

        KvQuantState(SideMemory side, int layers, boolean sparse) {
            keys = new OutlierStore[layers];
            values = new OutlierStore[layers];
            scales = new SideArray[layers];
            written = new int[layers];
            scanned = new int[layers];
            for (int l = 0; l < layers; l++) {
                keys[l] = sparse ? new OutlierStore(side) : null;
                values[l] = sparse ? new OutlierStore(side) : null;
                scales[l] = new SideArray(side, 4);
            }
        }

        private KvQuantState(OutlierStore[] keys, OutlierStore[] values, SideArray[] scales, int[] written) {
            this.keys = keys;
            this.values = values;
            this.scales = scales;
            this.written = written;
            this.scanned = new int[written.length];
        }

        void setScale(int layer, int position, short zero, short range) {
            scales[layer].setInt(position, (zero & 0xFFFF) | (range << 16));
        }

        float zero(int layer, int position) {
            return Half.value((short) scales[layer].getInt(position));
        }

        float range(int layer, int position) {
            return Half.value((short) (scales[layer].getInt(position) >>> 16));
        }

        boolean seen(int layer, int position) {
            return position < written[layer];
        }

        void wrote(int layer, int position) {
            written[layer] = Math.max(written[layer], position + 1);
        }

        /**
         * Gives back the side memory of positions no head holds any more, so that an eviction rule
         * composed with KVQuant (e.g. {@code +sink}) saves on the per-token scales and outlier lists as
         * well as on the blocks: every 32-position chunk of the scale and pointer arrays without a live
         * position is freed, and the outlier entries are compacted once dead lists pass a quarter of the live ones.
         * Checked every {@link #RESCAN_POSITIONS} new positions (freeing is by chunk anyway).
         */
        @Override
        public void beforeAttention(int layer, LayerKv kv) {
            if (written[layer] < scanned[layer] + RESCAN_POSITIONS) return;
            scanned[layer] = written[layer];
            int heads = kv.geometry().kvHeads();
            long live = 0;
            for (int h = 0; h < heads; h++) live += kv.liveTokens(h);
            if (live == (long) heads * written[layer]) return;
            BitSet livePositions = new BitSet(written[layer]);
            for (int h = 0; h < heads; h++) {
                for (int slot = 0; slot < kv.slots(h); slot++) {
                    int p = kv.position(h, slot);
                    if (p >= 0) livePositions.set(p);
                }
            }
            BitSet liveChunks = new BitSet();
            for (int p = livePositions.nextSetBit(0); p >= 0; p = livePositions.nextSetBit(p + 1)) {
                liveChunks.set(p / SideArray.CHUNK_ELEMENTS);
            }
            scales[layer].keepChunks(liveChunks);
            if (keys[layer] != null) keys[layer].release(livePositions, liveChunks);
            if (values[layer] != null) values[layer].release(livePositions, liveChunks);
        }

        @Override
        public FormatState fork(SideMemory side) {
            OutlierStore[] k = new OutlierStore[keys.length], v = new OutlierStore[values.length];
            SideArray[] sc = new SideArray[scales.length];
            for (int l = 0; l < keys.length; l++) {
                k[l] = keys[l] == null ? null : keys[l].copyTo(side);
                v[l] = values[l] == null ? null : values[l].copyTo(side);
                sc[l] = scales[l].copyTo(side);
            }
            return new KvQuantState(k, v, sc, written.clone());
        }
    }

    /**
     * Outliers keyed by position: {@code pointer[p]} = 1 + index of p's list in {@code entries} (0: none);
     * a list is its count followed by (channel, binary16 value) pairs. Replacing a position's list
     * appends a new one; the old one (and the lists of evicted positions) stay until {@link #release}
     * compacts the entries.
     */
    static final class OutlierStore {
        private final SideMemory side;
        private final SideArray pointers;
        private SideArray entries;
        private long used;
        private int positions;

        OutlierStore(SideMemory side) {
            this(side, new SideArray(side, 4), new SideArray(side, 2), 0, 0);
        }

        private OutlierStore(SideMemory side, SideArray pointers, SideArray entries, long used, int positions) {
            this.side = side;
            this.pointers = pointers;
            this.entries = entries;
            this.used = used;
            this.positions = positions;
        }

        OutlierStore copyTo(SideMemory side) {
            return new OutlierStore(side, pointers.copyTo(side), entries.copyTo(side), used, positions);
        }

        /**
         * Frees the pointer chunks without a live position and, when the lists of dead (evicted or
         * replaced) positions take more than a quarter of the live ones' entries (and over 256), copies
         * the live lists into a fresh entry array and frees the old one (amortised: each copy moves at
         * most four entries per entry that died since the last one).
         */
        void release(BitSet livePositions, BitSet liveChunks) {
            pointers.keepChunks(liveChunks);
            long liveEntries = 0;
            for (int p = livePositions.nextSetBit(0); p >= 0 && p < positions; p = livePositions.nextSetBit(p + 1)) {
                long at = pointers.getInt(p) - 1L;
                if (at >= 0) liveEntries += 1 + 2L * entries.getShort(at);
            }
            if (used - liveEntries <= Math.max(liveEntries / 4, 2L * SideArray.CHUNK_ELEMENTS)) return;
            SideArray fresh = new SideArray(side, 2);
            long next = 0;
            for (int p = 0; p < positions; p++) {
                if (!liveChunks.get(p / SideArray.CHUNK_ELEMENTS)) {
                    p = (p / SideArray.CHUNK_ELEMENTS + 1) * SideArray.CHUNK_ELEMENTS - 1;
                    continue;
                }
                long at = pointers.getInt(p) - 1L;
                if (at < 0) continue;
                if (!livePositions.get(p)) {
                    pointers.setInt(p, 0);
                    continue;
                }
                int n = 1 + 2 * entries.getShort(at);
                for (int i = 0; i < n; i++) fresh.setShort(next + i, entries.getShort(at + i));
                pointers.setInt(p, Math.toIntExact(next + 1));
                next += n;
            }
            entries.clear();
            entries = fresh;
            used = next;
        }

        void set(int position, short[] channels, short[] values, int count) {
            long start = used;
            entries.setShort(start, (short) count);
            for (int i = 0; i < count; i++) {
                entries.setShort(start + 1 + 2L * i, channels[i]);
                entries.setShort(start + 2 + 2L * i, values[i]);
            }
            used = start + 1 + 2L * count;
            pointers.setInt(position, Math.toIntExact(start + 1));
            positions = Math.max(positions, position + 1);
        }

        /** Copies p's outliers outside channels [lo, hi) into (channels, values); returns how many. */
        int others(int position, int lo, int hi, short[] channels, short[] values) {
            long p = pointers.getInt(position) - 1L;
            if (p < 0) return 0;
            int n = entries.getShort(p), k = 0;
            for (int i = 0; i < n; i++) {
                int c = entries.getShort(p + 1 + 2L * i) & 0xFFFF;
                if (c >= lo && c < hi) continue;
                channels[k] = (short) c;
                values[k++] = entries.getShort(p + 2 + 2L * i);
            }
            return k;
        }

        /** Overwrites dst[off + c − lo] with every stored outlier of {@code position} whose channel is in [lo, hi). */
        void patch(int position, int lo, int hi, float[] dst, int off) {
            if (position >= positions) return;
            long p = pointers.getInt(position) - 1L;
            if (p < 0) return;
            int n = entries.getShort(p);
            for (int i = 0; i < n; i++) {
                int c = entries.getShort(p + 1 + 2L * i) & 0xFFFF;
                if (c >= lo && c < hi) dst[off + c - lo] = Half.value(entries.getShort(p + 2 + 2L * i));
            }
        }
    }

    /** The whole-vector encoding of one token, shared by the blocks of all its KV heads. */
    private record TokenCodes(int[] keyCodes, int[] valueCodes) {}

    /** KVQuant codes of one block, with {@code fp16Slots} leading sink slots in fp16. */
    static final class Codec extends AbstractBlockCodec {

        private final KvQuantCalibration cal;
        private final int bits;
        private final int levels;
        private final int sinks;
        private final int fp16Slots;
        private final int codeBytes;
        private final long valueCodesAt;
        private final long sinkAt;
        private final long bytes;

        Codec(KvQuantCalibration cal, int headDim, int blockTokens, int fp16Slots) {
            super(headDim, blockTokens, KeyFrame.PRE_ROPE);
            this.cal = cal;
            this.bits = cal.config().bits();
            this.levels = 1 << bits;
            this.sinks = cal.config().sinks();
            this.fp16Slots = fp16Slots;
            this.codeBytes = BitPacking.bytesFor(headDim, bits);
            this.valueCodesAt = (long) blockTokens * codeBytes;
            this.sinkAt = valueCodesAt + (long) blockTokens * codeBytes;
            this.bytes = sinkAt + 4L * headDim * fp16Slots;
        }

        @Override
        public String name() {
            return "kvquant" + bits + (fp16Slots > 0 ? "+" + fp16Slots + "sink" : "");
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

        private long keyAt(int slot) {
            return (long) slot * codeBytes;
        }

        private long valueAt(int slot) {
            return valueCodesAt + (long) slot * codeBytes;
        }

        private long sinkKeyAt(int slot) {
            return sinkAt + 4L * headDim * slot;
        }

        @Override
        public void write(MemorySegment block, int slot, KvRows rows, int row, int kvHead, BlockContext ctx) {
            int pos = rows.position(row);
            int off = rows.offset(row, kvHead);
            if (pos < sinks) {
                if (slot >= fp16Slots) throw new IllegalStateException("sink position " + pos + " landed in slot " + slot + " of a " + name() + " block");
                writeHalf(block, sinkKeyAt(slot), rows.keysPreRope(), off);
                writeHalf(block, sinkKeyAt(slot) + 2L * headDim, rows.values(), off);
                return;
            }
            KvQuantState state = (KvQuantState) ctx.formatState();
            int layer = ctx.layer();
            int kvDim = rows.kvHeads() * headDim;
            TokenCodes codes = (TokenCodes) rows.memo(row);
            // A whole token: a new position, or (head 0 first, every head present) a prefix fork
            // re-appending after truncation. Anything else re-writes one head of a cached token.
            if (codes == null && kvHead == 0 && (!state.seen(layer, pos) || !otherHeadsZero(rows, row))) {
                state.wrote(layer, pos);
                codes = encodeToken(rows.keysPreRope(), rows.rowOffset(row), rows.values(), rows.rowOffset(row), kvDim, layer,
                        state, pos);
                rows.setMemo(row, codes);
            }
            if (codes != null) {
                int base = kvHead * headDim;
                for (int i = 0; i < headDim; i++) {
                    BitPacking.put(block, keyAt(slot), i, bits, codes.keyCodes[base + i]);
                    BitPacking.put(block, valueAt(slot), i, bits, codes.valueCodes[base + i]);
                }
                return;
            }
            if (!state.seen(layer, pos)) {
                throw new IllegalStateException("kvquant: head " + kvHead + " of position " + pos + " written before head 0");
            }
            writeHead(block, slot, rows.keysPreRope(), off, rows.values(), off, kvHead, layer, state, pos);
            state.wrote(layer, pos);
        }

        private boolean otherHeadsZero(KvRows rows, int row) {
            int off = rows.rowOffset(row), n = rows.kvHeads() * headDim;
            for (int i = headDim; i < n; i++) {
                if (rows.keysPreRope()[off + i] != 0f || rows.values()[off + i] != 0f) return false;
            }
            return true;
        }

        /** Encodes the whole token vector (all KV heads); records its value scale and outliers. */
        private TokenCodes encodeToken(float[] k, int kOff, float[] v, int vOff, int kvDim, int layer, KvQuantState state, int pos) {
            KvQuantCalibration.Outliers out = new KvQuantCalibration.Outliers(kvDim);
            byte[] keyRow = new byte[BitPacking.bytesFor(kvDim, bits)];
            cal.encodeKey(layer, k, kOff, keyRow, 0, out);
            if (state.keys[layer] != null) state.keys[layer].set(pos, out.channel, out.value, out.count);
            byte[] valueRow = new byte[cal.valueRowBytes()];
            cal.encodeValue(layer, v, vOff, valueRow, 0, out, new Integer[kvDim]);
            if (state.values[layer] != null) state.values[layer].set(pos, out.channel, out.value, out.count);
            int[] kc = new int[kvDim], vc = new int[kvDim];
            for (int c = 0; c < kvDim; c++) {
                kc[c] = BitPacking.get(keyRow, 0, c, bits);
                vc[c] = BitPacking.get(valueRow, 0, c, bits);
            }
            int s = cal.keyRowBytes();
            short zero = (short) ((valueRow[s] & 0xFF) | (valueRow[s + 1] << 8));
            short range = (short) ((valueRow[s + 2] & 0xFF) | (valueRow[s + 3] << 8));
            state.setScale(layer, pos, zero, range);
            return new TokenCodes(kc, vc);
        }

        /** One head re-written on its own: keys against the calibrated channels, values against the token's stored scale. */
        private void writeHead(MemorySegment block, int slot, float[] k, int kOff, float[] v, int vOff, int kvHead, int layer,
                               KvQuantState state, int pos) {
            int base = kvHead * headDim;
            float[] zero = cal.keyZero(layer), range = cal.keyRange(layer);
            NuqCodebook kb = cal.keyCodebook(layer), vb = cal.valueCodebook(layer);
            boolean sparse = cal.config().outliers() > 0;
            int kvDim = zero.length;
            short[] ch = new short[kvDim + headDim], val = new short[kvDim + headDim];
            int n = sparse ? state.keys[layer].others(pos, base, base + headDim, ch, val) : 0;
            for (int i = 0; i < headDim; i++) {
                int c = base + i;
                float u = (k[kOff + i] - zero[c]) / range[c];
                if (sparse && (u > 1f || u < -1f)) {
                    ch[n] = (short) c;
                    val[n++] = Half.bits(k[kOff + i]);
                    u = Math.max(-1f, Math.min(1f, u));
                }
                BitPacking.put(block, keyAt(slot), i, bits, kb.encode(u));
            }
            if (sparse) state.keys[layer].set(pos, ch, val, n);
            float z = state.zero(layer, pos), r = state.range(layer, pos);
            n = sparse ? state.values[layer].others(pos, base, base + headDim, ch, val) : 0;
            for (int i = 0; i < headDim; i++) {
                float x = v[vOff + i];
                float u = r > 0 ? (x - z) / r : 0f;
                if (sparse && (u > 1f || u < -1f || (r == 0 && x != z))) {
                    ch[n] = (short) (base + i);
                    val[n++] = Half.bits(x);
                    u = Math.max(-1f, Math.min(1f, u));
                }
                BitPacking.put(block, valueAt(slot), i, bits, vb.encode(u));
            }
            if (sparse) state.values[layer].set(pos, ch, val, n);
        }

        @Override
        public void encodeBlock(MemorySegment block, float[] keys, float[] values, int slots, BlockContext ctx) {
            int[] pos = ctx.positions();
            for (int s = 0; s < slots; s++) {
                if (pos[s] < 0) continue;
                if (isSink(s, pos[s])) {
                    writeHalf(block, sinkKeyAt(s), keys, s * headDim);
                    writeHalf(block, sinkKeyAt(s) + 2L * headDim, values, s * headDim);
                } else {
                    writeHead(block, s, keys, s * headDim, values, s * headDim, ctx.kvHead(), ctx.layer(),
                            (KvQuantState) ctx.formatState(), pos[s]);
                }
            }
        }

        @Override
        public void copySlot(MemorySegment src, int srcSlot, MemorySegment dst, int dstSlot) {
            MemorySegment.copy(src, keyAt(srcSlot), dst, keyAt(dstSlot), codeBytes);
            MemorySegment.copy(src, valueAt(srcSlot), dst, valueAt(dstSlot), codeBytes);
            if (srcSlot < fp16Slots && dstSlot < fp16Slots) {
                MemorySegment.copy(src, sinkKeyAt(srcSlot), dst, sinkKeyAt(dstSlot), 4L * headDim);
            }
        }

        @Override
        public void decodeKey(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            int pos = ctx.positions()[slot];
            if (isSink(slot, pos)) {
                readHalf(block, sinkKeyAt(slot), dst, off);
                return;
            }
            int layer = ctx.layer(), base = ctx.kvHead() * headDim;
            float[] table = cal.keyTable(layer);
            long at = keyAt(slot);
            for (int i = 0; i < headDim; i++) dst[off + i] = table[(base + i) * levels + BitPacking.get(block, at, i, bits)];
            OutlierStore store = ((KvQuantState) ctx.formatState()).keys[layer];
            if (store != null) store.patch(pos, base, base + headDim, dst, off);
        }

        @Override
        public void decodeValue(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            int pos = ctx.positions()[slot];
            if (isSink(slot, pos)) {
                readHalf(block, sinkKeyAt(slot) + 2L * headDim, dst, off);
                return;
            }
            int layer = ctx.layer(), base = ctx.kvHead() * headDim;
            float[] table = cal.valueTable(layer);
            KvQuantState state = (KvQuantState) ctx.formatState();
            float z = state.zero(layer, pos), r = state.range(layer, pos);
            long at = valueAt(slot);
            for (int i = 0; i < headDim; i++) dst[off + i] = r * table[BitPacking.get(block, at, i, bits)] + z;
            OutlierStore store = state.values[layer];
            if (store != null) store.patch(pos, base, base + headDim, dst, off);
        }

        private void writeHalf(MemorySegment block, long at, float[] src, int off) {
            for (int i = 0; i < headDim; i++) block.set(ValueLayout.JAVA_SHORT_UNALIGNED, at + 2L * i, Half.bits(src[off + i]));
        }

        private void readHalf(MemorySegment block, long at, float[] dst, int off) {
            for (int i = 0; i < headDim; i++) dst[off + i] = Half.value(block.get(ValueLayout.JAVA_SHORT_UNALIGNED, at + 2L * i));
        }
    }
}
