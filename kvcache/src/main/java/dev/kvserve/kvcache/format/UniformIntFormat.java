package dev.kvserve.kvcache.format;

import dev.kvserve.kernels.kv.KvKernels;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.policy.Params;
import dev.kvserve.kvcache.quant.BitPacking;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * {@code int8} / {@code int4} / {@code int3}: uniform asymmetric quantization per token, in groups of {@code group}
 * consecutive channels of a head (FlexGen-style group-wise min/max; {@code group=head} means one group
 * per head). Keys are quantized after RoPE, as the KVQuant paper configures its per-token baselines.
 * Each group stores fp16 scale and fp16 minimum. Per-slot layout: codes (headDim·bits/8 bytes) then
 * groups × (scale, min); block = all key slots then all value slots. 3-bit codes are a continuous
 * little-endian bit stream ({@link BitPacking}: 8 codes in 3 bytes), so a group must be a multiple of 8
 * channels for its codes to end on a byte.
 */
public final class UniformIntFormat implements KvStorageFormat {

    private final Params params;
    private final int bits;
    private final int group;

    public UniformIntFormat(Params params, int bits) {
        this.params = params;
        this.bits = bits;
        this.group = params.getInt("group");
    }

    @Override
    public Params params() {
        return params;
    }

    @Override
    public FormatBinding bind(KvGeometry geometry, int blockTokens) {
        int d = geometry.headDim();
        int g = group == 0 ? d : group;
        if (d % g != 0) {
            throw new IllegalArgumentException(params.method() + ": group=" + g + " must divide the head size " + d
                    + " (e.g. group=" + d + " or group=head)");
        }
        if (g * bits % 8 != 0) {
            throw new IllegalArgumentException(params.method() + ": group=" + g + " of " + bits + "-bit codes is not whole bytes");
        }
        BlockCodec codec = new Codec(d, blockTokens, bits, g);
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
                return codec;
            }
        };
    }

    /** Per-token, per-group min/max codes. */
    public static final class Codec extends AbstractBlockCodec {

        private final int bits;
        private final int group;
        private final int groups;
        private final int codeBytes;
        private final long slotBytes;

        public Codec(int headDim, int blockTokens, int bits, int group) {
            super(headDim, blockTokens, KeyFrame.POST_ROPE);
            this.bits = bits;
            this.group = group;
            this.groups = headDim / group;
            this.codeBytes = BitPacking.bytesFor(headDim, bits);
            this.slotBytes = codeBytes + 4L * groups;
        }

        @Override
        public String name() {
            return "int" + bits + "/g" + group;
        }

        @Override
        public long blockBytes() {
            return 2 * blockTokens * slotBytes;
        }

        @Override
        public boolean perToken() {
            return true;
        }

        private long keyAt(int slot) {
            return slot * slotBytes;
        }

        private long valueAt(int slot) {
            return (blockTokens + slot) * slotBytes;
        }

        private void encode(float[] x, int off, MemorySegment block, long at, int[] codes) {
            for (int g = 0; g < groups; g++) {
                int p = KvKernels.quantizeGroup(x, off + g * group, 1, group, bits, codes, g * group);
                block.set(ValueLayout.JAVA_INT_UNALIGNED, at + codeBytes + 4L * g, p);
            }
            if (bytePacked()) {
                KvKernels.pack(codes, 0, headDim, bits, block, at);
            } else {
                for (int c = 0; c < headDim; c++) BitPacking.put(block, at, c, bits, codes[c]);
            }
        }

        /** 2, 4 and 8 bits use the byte-aligned kernels; other widths the generic bit stream. */
        private boolean bytePacked() {
            return bits == 2 || bits == 4 || bits == 8;
        }

        private void decode(MemorySegment block, long at, float[] dst, int off) {
            int bytesPerGroup = group * bits / 8;
            for (int g = 0; g < groups; g++) {
                int p = block.get(ValueLayout.JAVA_INT_UNALIGNED, at + codeBytes + 4L * g);
                if (!bytePacked()) {
                    float scale = KvKernels.scaleOf(p), min = KvKernels.minOf(p);
                    for (int c = g * group; c < (g + 1) * group; c++) dst[off + c] = min + BitPacking.get(block, at, c, bits) * scale;
                    continue;
                }
                KvKernels.dequantize(block, at + (long) g * bytesPerGroup, group, bits, KvKernels.scaleOf(p), KvKernels.minOf(p), dst, off + g * group);
            }
        }

        @Override
        public void write(MemorySegment block, int slot, KvRows rows, int row, int kvHead, BlockContext ctx) {
            int off = rows.offset(row, kvHead);
            int[] codes = new int[headDim];
            encode(keySource(rows), off, block, keyAt(slot), codes);
            encode(rows.values(), off, block, valueAt(slot), codes);
        }

        @Override
        public void encodeBlock(MemorySegment block, float[] keys, float[] values, int slots, BlockContext ctx) {
            int[] codes = new int[headDim];
            for (int s = 0; s < slots; s++) {
                encode(keys, s * headDim, block, keyAt(s), codes);
                encode(values, s * headDim, block, valueAt(s), codes);
            }
        }

        @Override
        public void copySlot(MemorySegment src, int srcSlot, MemorySegment dst, int dstSlot) {
            MemorySegment.copy(src, keyAt(srcSlot), dst, keyAt(dstSlot), slotBytes);
            MemorySegment.copy(src, valueAt(srcSlot), dst, valueAt(dstSlot), slotBytes);
        }

        @Override
        public void decodeKey(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            decode(block, keyAt(slot), dst, off);
        }

        @Override
        public void decodeValue(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            decode(block, valueAt(slot), dst, off);
        }
    }
}
