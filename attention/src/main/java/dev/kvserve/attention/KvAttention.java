package dev.kvserve.attention;

import java.lang.foreign.MemorySegment;

/**
 * The seam between the decoder and the KV cache: for one layer of one batched step, store the new
 * keys and values of every sequence and compute the attention output of its queries over all it
 * has cached (its own new tokens included, causally).
 *
 * <p>Layout of the batch: rows are tokens; sequence {@code i} of {@code batch} owns rows
 * {@code batch.firstRow(i) .. firstRow(i) + tokens(i) - 1}, at positions {@code batch.startPos(i)}
 * onwards. {@code q} is [rows][heads·headDim] with RoPE already applied; {@code k} and {@code v}
 * are [rows][kvHeads·headDim] and {@code k} is <em>before</em> RoPE, so that a storage format may
 * quantize pre-RoPE keys (KVQuant) and the implementation applies RoPE itself. {@code out} is
 * [rows][heads·headDim]. Every buffer is F32 from the same {@link dev.kvserve.kernels.Backend}.
 */
public interface KvAttention {

    void attend(int layer, StepBatch batch, MemorySegment q, MemorySegment k, MemorySegment v, MemorySegment out);
}
