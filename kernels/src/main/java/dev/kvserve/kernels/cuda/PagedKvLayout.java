package dev.kvserve.kernels.cuda;

/**
 * Byte layout of a paged KV pool as the CUDA kernels address it (native/src/main/cuda/kv_layout.cuh).
 *
 * <p>A pool is {@code blocks} blocks of {@link #blockBytes()}; block b holds tokens (slots)
 * b*blockTokens .. b*blockTokens + blockTokens - 1 of every KV head, head h at byte
 * {@code b*blockBytes() + h*headBytes()}. Within a head: F32/F16 store token t's channel c at
 * element t*headDim + c. INT8 stores int8 codes [t*headDim + c], then from byte
 * {@link #paramsOffset()} (blockTokens*headDim rounded up to 16) an fp16 scale per (token, group)
 * at index t*(headDim/group) + c/group; x = code * scale with scale = fp16(absmax / 127) and
 * code = clamp(rint(x / scale), ±127). INT4 stores a byte per channel pair [t*headDim/2 + c/2]
 * (even channel in the low nibble), then from {@link #paramsOffset()} (blockTokens*headDim/2
 * rounded up to 16) an fp16 (scale, min) pair per (token, group); x = code*scale + min
 * with scale = fp16((max - min) / 15), min = fp16(min), code = clamp(rint((x - min) / scale), 0, 15).
 * Quantization parameters depend on the token alone, so appending never rewrites older tokens.
 *
 * @param group channels sharing one scale (INT8/INT4); must divide headDim (even for INT4); ignored
 *              by F32/F16
 */
public record PagedKvLayout(KvFormat format, int blockTokens, int kvHeads, int headDim, int group) {

    public PagedKvLayout {
        if (blockTokens <= 0 || kvHeads <= 0 || headDim <= 0 || headDim > 256) {
            throw new IllegalArgumentException("bad paged KV layout: blockTokens=" + blockTokens + " kvHeads=" + kvHeads
                    + " headDim=" + headDim + " (head dims up to 256 are supported)");
        }
        if (format == KvFormat.INT8 || format == KvFormat.INT4) {
            if (group <= 0 || headDim % group != 0) {
                throw new IllegalArgumentException("quantization group " + group + " must divide headDim " + headDim);
            }
            if (format == KvFormat.INT4 && (group % 2 != 0 || headDim % 2 != 0)) {
                throw new IllegalArgumentException("INT4 packs channel pairs: group " + group + " and headDim "
                        + headDim + " must be even");
            }
        } else {
            group = headDim;
        }
    }

    public static PagedKvLayout of(KvFormat format, int blockTokens, int kvHeads, int headDim) {
        return new PagedKvLayout(format, blockTokens, kvHeads, headDim, headDim);
    }

    /** Bytes of one token's codes in one head. */
    public long codeBytesPerToken() {
        return switch (format) {
            case F32 -> 4L * headDim;
            case F16 -> 2L * headDim;
            case INT8 -> headDim;
            case INT4 -> headDim / 2;
        };
    }

    /** Bytes of one token's quantization parameters in one head. */
    public long paramBytesPerToken() {
        return switch (format) {
            case F32, F16 -> 0;
            case INT8 -> 2L * (headDim / group);
            case INT4 -> 4L * (headDim / group);
        };
    }

    /** Byte offset of the quantization parameters inside a head: the codes' size rounded up to 16. */
    public long paramsOffset() {
        return roundUp16(blockTokens * codeBytesPerToken());
    }

    /** Bytes of one head of one block, rounded up to 16. */
    public long headBytes() {
        return roundUp16(paramsOffset() + blockTokens * paramBytesPerToken());
    }

    private static long roundUp16(long bytes) {
        return (bytes + 15) / 16 * 16;
    }

    public long blockBytes() {
        return kvHeads * headBytes();
    }

    /** Slot of token {@code i} of a sequence whose block table is {@code table}. */
    public int slot(int[] table, int i) {
        return table[i / blockTokens] * blockTokens + i % blockTokens;
    }
}
