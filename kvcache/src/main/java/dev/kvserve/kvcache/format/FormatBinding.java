package dev.kvserve.kvcache.format;

import dev.kvserve.kvcache.KvGeometry;

/**
 * A storage format bound to one model geometry and block size: which codec a block uses, when blocks
 * are re-encoded ("sealed"), and per-sequence state. Shared by all sequences, so thread-safe.
 *
 * <p>Block life cycle: tokens are appended slot by slot into blocks created with
 * {@link #appendCodec}. Once a block is full and its newest token is more than {@link #recentTokens}
 * positions behind the sequence's newest token, the cache re-encodes it with {@link #sealedCodec}
 * (one {@link BlockCodec#encodeBlock} call seeing all of the block's tokens) into a freshly allocated
 * block and frees the old one. This is how formats with a full-precision recent window (KIVI's
 * residual, CQ's and AQUA-KV's fp16 buffer) and formats needing statistics across the tokens of a
 * block (KIVI's per-channel key groups) are expressed. Formats that encode each token once return
 * {@link Integer#MAX_VALUE} from {@link #recentTokens} and are never sealed.
 */
public interface FormatBinding {

    KvGeometry geometry();

    int blockTokens();

    /**
     * Codec for a new block of {@code layer} whose first slot will hold position {@code firstPosition}.
     * Sink-aware formats return a different codec for blocks holding sink positions (e.g. KVQuant's
     * fp16 first token).
     */
    BlockCodec appendCodec(int layer, int firstPosition);

    /** Newest tokens kept in the append codec; older full blocks get sealed. MAX_VALUE: never seal. */
    default int recentTokens() {
        return Integer.MAX_VALUE;
    }

    /** Codec a full block of {@code layer} currently in {@code current} is sealed into. */
    default BlockCodec sealedCodec(int layer, BlockCodec current) {
        return current;
    }

    /**
     * Upper bound of the bytes, as stored, of one (layer, KV head) block table holding {@code blocks}
     * blocks after the sequence has seen positions 0..tokens-1 (used for admission control).
     */
    default long tableBytes(int layer, int blocks, int tokens) {
        if (blocks <= 0) return 0;
        long first = appendCodec(layer, 0).blockBytes();
        long rest = appendCodec(layer, blockTokens()).blockBytes();
        int sealedBlocks = 0;
        if (recentTokens() != Integer.MAX_VALUE) {
            int open = (recentTokens() + blockTokens() - 1) / blockTokens() + 1;
            sealedBlocks = Math.max(0, blocks - open);
        }
        long sealed = sealedBlocks == 0 ? 0 : sealedCodec(layer, appendCodec(layer, blockTokens())).blockBytes();
        long sealedFirst = sealedBlocks == 0 ? first : sealedCodec(layer, appendCodec(layer, 0)).blockBytes();
        if (sealedBlocks == 0) return first + (blocks - 1) * rest;
        return sealedFirst + (sealedBlocks - 1) * sealed + (long) (blocks - sealedBlocks) * rest;
    }

    /**
     * Per-sequence state of this format (outlier side stores, transient reconstructions, ...).
     * {@code side} allocates pool memory counted in the budget and in the sequence's bytes.
     */
    default FormatState openSequence(SideMemory side) {
        return FormatState.NONE;
    }
}
