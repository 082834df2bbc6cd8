package dev.kvserve.kvcache.format;

import dev.kvserve.kernels.kv.KvKernels;
import dev.kvserve.kvcache.KvGeometry;
import dev.kvserve.kvcache.KvRows;
import dev.kvserve.kvcache.policy.Params;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * KIVI (Liu et al., "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache", ICML 2024):
 * keys quantized per channel with min/max over groups of tokens, values per token with min/max over
 * groups of channels, the most recent tokens kept in full precision (fp16) until a whole group of
 * them can be quantized together. Keys are the post-RoPE keys (KIVI quantizes the HF cache, which holds
 * rotated keys).
 *
 * <p>Mapping onto blocks: a block fills in fp16; once it is full and all its tokens are older than the
 * newest {@code residual} tokens it is sealed into the 2/4-bit layout, with per-channel key statistics
 * over groups of {@code min(group, blockTokens)} tokens (a block is sealed on its own, so a key group
 * cannot span blocks; with the default 16-token blocks and group=32 keys are grouped per 16 tokens) and
 * per-token value statistics over {@code min(group, headDim)} channels (the shared test models have
 * heads of 8 and 16). The full-precision window therefore holds between {@code residual} and
 * {@code residual + blockTokens - 1} tokens, where KIVI's keys cycle between 0 and residual - 1.
 *
 * <p>Sealed layout: key codes [blockTokens][headDim·bits/8], key (scale, min) fp16 pairs
 * [blockTokens/keyGroup][headDim], value codes [blockTokens][headDim·bits/8], value pairs
 * [blockTokens][headDim/valueGroup].
 */
public final class KiviFormat implements KvStorageFormat {

    private final Params params;
    private final int bits;
    private final int group;
    private final int residual;

    public KiviFormat(Params params) {
        this.params = params;
        this.bits = params.getInt("bits");
        this.group = params.getInt("group");
        this.residual = params.getInt("residual");
    }

    @Override
    public Params params() {
        return params;
    }

    @Override
    public FormatBinding bind(KvGeometry geometry, int blockTokens) {
        int d = geometry.headDim();
        int keyGroup;
        if (blockTokens % group == 0) keyGroup = group;
        else if (group % blockTokens == 0) keyGroup = blockTokens;
        else throw new IllegalArgumentException("kivi: group=" + group + " and the block size " + blockTokens
                + " tokens must divide one another");
        int valueGroup;
        if (d % group == 0) valueGroup = group;
        else if (group % d == 0) valueGroup = d;
        else throw new IllegalArgumentException("kivi: group=" + group + " and the head size " + d + " must divide one another");
        if (d * bits % 8 != 0 || valueGroup * bits % 8 != 0) {
            throw new IllegalArgumentException("kivi: head size " + d + " with " + bits + "-bit codes is not whole bytes");
        }
        BlockCodec open = new FullPrecisionFormat.Fp16Codec(d, blockTokens, KeyFrame.POST_ROPE);
        BlockCodec sealed = new SealedCodec(d, blockTokens, bits, keyGroup, valueGroup);
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
                return open;
            }

            @Override
            public int recentTokens() {
                return residual;
            }

            @Override
            public BlockCodec sealedCodec(int layer, BlockCodec current) {
                return sealed;
            }
        };
    }

    /** The 2/4-bit layout of a sealed block. */
    public static final class SealedCodec extends AbstractBlockCodec {

        private final int bits;
        private final int keyGroup;
        private final int valueGroup;
        private final int rowCodeBytes;
        private final long keyParamsAt;
        private final long valueCodesAt;
        private final long valueParamsAt;
        private final long bytes;

        public SealedCodec(int headDim, int blockTokens, int bits, int keyGroup, int valueGroup) {
            super(headDim, blockTokens, KeyFrame.POST_ROPE);
            this.bits = bits;
            this.keyGroup = keyGroup;
            this.valueGroup = valueGroup;
            this.rowCodeBytes = KvKernels.packedBytes(headDim, bits);
            this.keyParamsAt = (long) blockTokens * rowCodeBytes;
            this.valueCodesAt = keyParamsAt + 4L * (blockTokens / keyGroup) * headDim;
            this.valueParamsAt = valueCodesAt + (long) blockTokens * rowCodeBytes;
            this.bytes = valueParamsAt + 4L * blockTokens * (headDim / valueGroup);
        }

        @Override
        public String name() {
            return "kivi" + bits + "/k" + keyGroup + "/v" + valueGroup;
        }

        @Override
        public long blockBytes() {
            return bytes;
        }

        @Override
        public boolean perToken() {
            return false;
        }

        @Override
        public void write(MemorySegment block, int slot, KvRows rows, int row, int kvHead, BlockContext ctx) {
            throw new UnsupportedOperationException("a sealed KIVI block is encoded as a whole");
        }

        @Override
        public void encodeBlock(MemorySegment block, float[] keys, float[] values, int slots, BlockContext ctx) {
            int d = headDim;
            int[] pos = ctx.positions();
            float[] k = keys.clone();
            // dead slots must not widen a group's range: give them a live neighbour's values
            for (int g = 0; g < slots / keyGroup; g++) {
                int liveSlot = -1;
                for (int t = g * keyGroup; t < (g + 1) * keyGroup && liveSlot < 0; t++) if (pos[t] >= 0) liveSlot = t;
                if (liveSlot < 0) continue;
                for (int t = g * keyGroup; t < (g + 1) * keyGroup; t++) {
                    if (pos[t] < 0) System.arraycopy(k, liveSlot * d, k, t * d, d);
                }
            }
            int[] codes = new int[Math.max(keyGroup, d)];
            int[] keyCodes = new int[slots * d];
            for (int g = 0; g < slots / keyGroup; g++) {
                for (int c = 0; c < d; c++) {
                    int p = KvKernels.quantizeGroup(k, g * keyGroup * d + c, d, keyGroup, bits, codes, 0);
                    block.set(ValueLayout.JAVA_INT_UNALIGNED, keyParamsAt + 4L * (g * d + c), p);
                    for (int t = 0; t < keyGroup; t++) keyCodes[(g * keyGroup + t) * d + c] = codes[t];
                }
            }
            for (int s = 0; s < slots; s++) KvKernels.pack(keyCodes, s * d, d, bits, block, (long) s * rowCodeBytes);
            int vGroups = d / valueGroup;
            for (int s = 0; s < slots; s++) {
                for (int g = 0; g < vGroups; g++) {
                    int p = KvKernels.quantizeGroup(values, s * d + g * valueGroup, 1, valueGroup, bits, codes, g * valueGroup);
                    block.set(ValueLayout.JAVA_INT_UNALIGNED, valueParamsAt + 4L * (s * vGroups + g), p);
                }
                KvKernels.pack(codes, 0, d, bits, block, valueCodesAt + (long) s * rowCodeBytes);
            }
        }

        @Override
        public void decodeKey(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            long paramsAt = keyParamsAt + 4L * (slot / keyGroup) * headDim;
            KvKernels.unpack(block, (long) slot * rowCodeBytes, headDim, bits, dst, off);
            for (int c = 0; c < headDim; c++) {
                int p = block.get(ValueLayout.JAVA_INT_UNALIGNED, paramsAt + 4L * c);
                dst[off + c] = KvKernels.minOf(p) + dst[off + c] * KvKernels.scaleOf(p);
            }
        }

        /**
         * Scores over codes: within a key group every slot shares the channel scales and minima, so
         * q·k = Σ_c (q_c·scale_c)·code_c + Σ_c q_c·min_c; the scaled query and the constant are
         * computed once per group and query, then each slot costs one dot product with its codes.
         */
        @Override
        public void keyScores(MemorySegment block, int from, int to, float[] q, int qOff, int qStride, int nq,
                              float[] scores, int ld, BlockContext ctx) {
            int d = headDim;
            int[] pos = ctx.positions();
            float[] scale = new float[d], min = new float[d];
            float[] qs = ctx.scratch2(nq * d);
            float[] qm = new float[nq];
            float[] codes = ctx.scratch(d);
            int loadedGroup = -1;
            for (int s = from; s < to; s++) {
                if (pos[s] < 0) {
                    for (int i = 0; i < nq; i++) scores[i * ld + s - from] = 0f;
                    continue;
                }
                int g = s / keyGroup;
                if (g != loadedGroup) {
                    loadedGroup = g;
                    long paramsAt = keyParamsAt + 4L * g * d;
                    for (int c = 0; c < d; c++) {
                        int p = block.get(ValueLayout.JAVA_INT_UNALIGNED, paramsAt + 4L * c);
                        scale[c] = KvKernels.scaleOf(p);
                        min[c] = KvKernels.minOf(p);
                    }
                    for (int i = 0; i < nq; i++) {
                        int qo = qOff + i * qStride;
                        for (int c = 0; c < d; c++) qs[i * d + c] = q[qo + c] * scale[c];
                        qm[i] = KvKernels.dot(q, qo, min, 0, d);
                    }
                }
                KvKernels.unpack(block, (long) s * rowCodeBytes, d, bits, codes, 0);
                for (int i = 0; i < nq; i++) scores[i * ld + s - from] = KvKernels.dot(qs, i * d, codes, 0, d) + qm[i];
            }
        }

        @Override
        public void decodeValue(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx) {
            int vGroups = headDim / valueGroup;
            int bytesPerGroup = valueGroup * bits / 8;
            long codesAt = valueCodesAt + (long) slot * rowCodeBytes;
            for (int g = 0; g < vGroups; g++) {
                int p = block.get(ValueLayout.JAVA_INT_UNALIGNED, valueParamsAt + 4L * (slot * vGroups + g));
                KvKernels.dequantize(block, codesAt + (long) g * bytesPerGroup, valueGroup, bits,
                        KvKernels.scaleOf(p), KvKernels.minOf(p), dst, off + g * valueGroup);
            }
        }
    }
}
