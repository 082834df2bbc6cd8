package dev.kvserve.kvcache.format;

import dev.kvserve.kvcache.KvRows;
import java.lang.foreign.MemorySegment;

/**
 * Encodes and reads one block: {@code blockTokens} slots of keys and values of one layer and one KV
 * head, inside {@link #blockBytes()} bytes of pool memory. Codecs are stateless and thread-safe; all
 * per-call information comes in {@link BlockContext}. Slots are independent of each other in the
 * read methods: the attention kernel never materialises a dequantised copy of the cache, it calls
 * {@link #keyScores} and {@link #addValues} block by block.
 *
 * <p>Key frame: {@link #decodeKey} returns keys in {@link #keyFrame()}; {@link #keyScores} returns
 * scores against keys as attention sees them (rotated at their position). The default
 * implementations here are the scalar reference; formats override them with Vector API code.
 */
public interface BlockCodec {

    /** Short name for diagnostics, e.g. {@code int4/g32}. */
    String name();

    KeyFrame keyFrame();

    /** Bytes of one block, keys + values + all metadata, as stored. */
    long blockBytes();

    /**
     * True when {@link #write} stores one slot independently of the others and a slot can be moved to
     * another block of the same codec with {@link #copySlot} (per-token formats). False for codecs
     * with statistics over the tokens of a block; those only support {@link #encodeBlock}.
     */
    boolean perToken();

    /**
     * Stores token {@code row} of {@code rows} for {@code kvHead} into {@code slot}. Keys are taken in
     * this codec's frame ({@link KvRows#keysPreRope} or {@link KvRows#keysPostRope}). Called for
     * appends on codecs returned by {@code FormatBinding.appendCodec}, and on any {@link #perToken()}
     * codec to rewrite one slot (merges); then only head {@code kvHead} of the row is meaningful.
     */
    void write(MemorySegment block, int slot, KvRows rows, int row, int kvHead, BlockContext ctx);

    /**
     * Encodes a whole block at once: {@code keys} and {@code values} are [slots][headDim] starting at
     * offset 0, keys in this codec's frame; {@code ctx.positions()} gives each slot's position, -1
     * for a dead slot (its contents are zeros and irrelevant: exclude it from statistics).
     * Slots from {@code slots} to blockTokens stay empty.
     */
    void encodeBlock(MemorySegment block, float[] keys, float[] values, int slots, BlockContext ctx);

    /** Copies one slot's encoded key and value (only when {@link #perToken()}). */
    default void copySlot(MemorySegment src, int srcSlot, MemorySegment dst, int dstSlot) {
        throw new UnsupportedOperationException(name() + " cannot move single slots");
    }

    /** Key of {@code slot} in this codec's frame, into dst[off .. off+headDim). */
    void decodeKey(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx);

    /** Value of {@code slot} into dst[off .. off+headDim). */
    void decodeValue(MemorySegment block, int slot, float[] dst, int off, BlockContext ctx);

    /**
     * {@code scores[i*ld + s-from] = q_i · K_s} for queries i < nq and slots s in [from, to), where
     * q_i = q[qOff + i*qStride ..+headDim] and K_s is the key rotated at position
     * {@code ctx.positions()[s]}. Dead slots (position < 0) may receive any finite value.
     */
    default void keyScores(MemorySegment block, int from, int to, float[] q, int qOff, int qStride, int nq,
                           float[] scores, int ld, BlockContext ctx) {
        int d = ctx.headDim();
        float[] k = ctx.scratch(d);
        for (int s = from; s < to; s++) {
            int pos = ctx.positions()[s];
            if (pos < 0) {
                for (int i = 0; i < nq; i++) scores[i * ld + s - from] = 0f;
                continue;
            }
            decodeKey(block, s, k, 0, ctx);
            if (keyFrame() == KeyFrame.PRE_ROPE) ctx.rope().rotate(k, 0, pos);
            for (int i = 0; i < nq; i++) {
                int qo = qOff + i * qStride;
                float acc = 0f;
                for (int c = 0; c < d; c++) acc += q[qo + c] * k[c];
                scores[i * ld + s - from] = acc;
            }
        }
    }

    /**
     * {@code acc[accOff + i*accStride + c] += Σ_s w[i*ld + s-from] · V_s[c]} for i < nq, s in
     * [from, to), c < headDim. Weights of dead or masked slots are exactly 0 and may be skipped.
     */
    default void addValues(MemorySegment block, int from, int to, float[] w, int ld, int nq,
                           float[] acc, int accOff, int accStride, BlockContext ctx) {
        int d = ctx.headDim();
        float[] v = ctx.scratch(d);
        for (int s = from; s < to; s++) {
            boolean any = false;
            for (int i = 0; i < nq; i++) any |= w[i * ld + s - from] != 0f;
            if (!any) continue;
            decodeValue(block, s, v, 0, ctx);
            for (int i = 0; i < nq; i++) {
                float p = w[i * ld + s - from];
                if (p == 0f) continue;
                int ao = accOff + i * accStride;
                for (int c = 0; c < d; c++) acc[ao + c] += p * v[c];
            }
        }
    }
}
