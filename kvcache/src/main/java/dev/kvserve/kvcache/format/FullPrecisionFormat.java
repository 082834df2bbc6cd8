package dev.kvserve.kvcache.format;

import dev.kvserve.kernels.kv.KvKernels;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.policy.Params;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * {@code fp32} (exact: what attention would compute without a cache) and {@code fp16} (half the
 * bytes, round-to-nearest-even). Keys are stored after RoPE. Block layout: all keys of the block
 * ([blockTokens][headDim]), then all values.
 */
public final class FullPrecisionFormat implements KvStorageFormat {

    private final Params params;
    private final boolean half;

    public FullPrecisionFormat(Params params, boolean half) {
        this.params = params;
        this.half = half;
    }

    @Override
    public Params params() {
        return params;
    }

    @Override
    public FormatBinding bind(KvGeometry geometry, int blockTokens) {
        BlockCodec codec = half ? new Fp16Codec(geometry.headDim(), blockTokens, KeyFrame.POST_ROPE)
                : new Fp32Codec(geometry.headDim(), blockTokens, KeyFrame.POST_ROPE);
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

    /** Floats, little-endian. Scores and value sums read the block memory directly. */
    public static final class Fp32Codec extends AbstractBlockCodec {

        private final long rowBytes;

        public Fp32Codec(int headDim, int blockTokens, KeyFrame frame) {
            super(headDim, blockTokens, frame);
            this.rowBytes = 4L * headDim;
        }

        @Override
        public String name() {
            return "fp32";
        }

        @Override
        public long blockBytes() {
            return 2 * blockTokens * rowBytes;
        }

        @Override
        public boolean perToken() {
            return true;
        }

        private long keyAt(int slot) {
            return slot * rowBytes;
        }

        private long valueAt(int slot) {
            return (blockTokens + slot) * rowBytes;
        }

        @Override
        public void write(MemorySegment block, int slot, KvRows rows, int row, int kvHead, BlockContext ctx) {
            int off = rows.offset(row, kvHead);
            MemorySegment.copy(keySource(rows), off, block, ValueLayout.JAVA_FLOAT_UNALIGNED, keyAt(slot), headDim);
            MemorySegment.copy(rows.values(), off, block, ValueLayout.JAVA_FLOAT_UNALIGNED, valueAt(slot), headDim);
        }

        @Override
        public void encodeBlock(MemorySegment block, float[] keys, float[] values, int slots, BlockContext ctx) {
            MemorySegment.copy(keys, 0, block, ValueLayout.JAVA_FLOAT_UNALIGNED, 0, slots * headDim);
            MemorySegment.copy(values, 0, block, ValueLayout.JAVA_FLOAT_UNALIGNED, valueAt(0), slots * headDim);
        }

        @Override
        public void copySlot(MemorySegment src, int srcSlot, MemorySegment dst, int dstSlot) {
            MemorySegment.copy(src, keyAt(srcSlot), dst, keyAt(dstSlot), rowBytes);
            MemorySegment.copy(src, valueAt(srcSlot), dst, valueAt(dstSlot), rowBytes);
        }

        @Override
        public void decodeKey(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            MemorySegment.copy(block, ValueLayout.JAVA_FLOAT_UNALIGNED, keyAt(slot), dst, off, headDim);
        }

        @Override
        public void decodeValue(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            MemorySegment.copy(block, ValueLayout.JAVA_FLOAT_UNALIGNED, valueAt(slot), dst, off, headDim);
        }

        @Override
        public void keyScores(MemorySegment block, int from, int to, float[] q, int qOff, int qStride, int nq,
                              float[] scores, int ld, BlockContext ctx) {
            if (keyFrame == KeyFrame.PRE_ROPE) {
                super.keyScores(block, from, to, q, qOff, qStride, nq, scores, ld, ctx);
                return;
            }
            for (int s = from; s < to; s++) {
                long at = keyAt(s);
                for (int i = 0; i < nq; i++) scores[i * ld + s - from] = KvKernels.dot(block, at, q, qOff + i * qStride, headDim);
            }
        }

        @Override
        public void addValues(MemorySegment block, int from, int to, float[] w, int ld, int nq,
                              float[] acc, int accOff, int accStride, BlockContext ctx) {
            for (int s = from; s < to; s++) {
                long at = valueAt(s);
                for (int i = 0; i < nq; i++) {
                    float p = w[i * ld + s - from];
                    if (p != 0f) KvKernels.axpy(p, block, at, acc, accOff + i * accStride, headDim);
                }
            }
        }
    }

    /** IEEE half floats, little-endian. */
    public static final class Fp16Codec extends AbstractBlockCodec {

        private final long rowBytes;

        public Fp16Codec(int headDim, int blockTokens, KeyFrame frame) {
            super(headDim, blockTokens, frame);
            this.rowBytes = 2L * headDim;
        }

        @Override
        public String name() {
            return "fp16";
        }

        @Override
        public long blockBytes() {
            return 2 * blockTokens * rowBytes;
        }

        @Override
        public boolean perToken() {
            return true;
        }

        private long keyAt(int slot) {
            return slot * rowBytes;
        }

        private long valueAt(int slot) {
            return (blockTokens + slot) * rowBytes;
        }

        @Override
        public void write(MemorySegment block, int slot, KvRows rows, int row, int kvHead, BlockContext ctx) {
            int off = rows.offset(row, kvHead);
            KvKernels.f32ToF16(keySource(rows), off, block, keyAt(slot), headDim);
            KvKernels.f32ToF16(rows.values(), off, block, valueAt(slot), headDim);
        }

        @Override
        public void encodeBlock(MemorySegment block, float[] keys, float[] values, int slots, BlockContext ctx) {
            KvKernels.f32ToF16(keys, 0, block, 0, slots * headDim);
            KvKernels.f32ToF16(values, 0, block, valueAt(0), slots * headDim);
        }

        @Override
        public void copySlot(MemorySegment src, int srcSlot, MemorySegment dst, int dstSlot) {
            MemorySegment.copy(src, keyAt(srcSlot), dst, keyAt(dstSlot), rowBytes);
            MemorySegment.copy(src, valueAt(srcSlot), dst, valueAt(dstSlot), rowBytes);
        }

        @Override
        public void decodeKey(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            KvKernels.f16ToF32(block, keyAt(slot), dst, off, headDim);
        }

        @Override
        public void decodeValue(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            KvKernels.f16ToF32(block, valueAt(slot), dst, off, headDim);
        }
    }
}
