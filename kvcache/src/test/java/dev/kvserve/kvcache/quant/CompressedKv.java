package dev.kvserve.kvcache.quant;

import dev.kvserve.kvcache.KvGeometry;

/**
 * One sequence's KV cache under a calibrated quantization method, all layers: it stores each new
 * token's pre-RoPE key and value in the method's compressed form and computes attention by reading
 * those codes (codebook/centroid lookups, RoPE applied on read), never by decompressing the whole cache.
 *
 * <p>Rows are tokens. {@code k}, {@code v} are {@code [rows][kvHeads·headDim]} (k before RoPE);
 * {@code q} and {@code out} are {@code [rows][heads·headDim]}, q after RoPE. Tokens are appended in
 * position order starting at 0, and in every step layer 0 is written first, then layer 1, and so on
 * (AQUA-KV predicts a layer from the one before). Query row {@code r} of an {@link #attend} sits at
 * position {@code queryPos0 + r} and sees every cached position up to and including its own. Not
 * thread-safe: one sequence is driven by one thread at a time.
 */
interface CompressedKv extends AutoCloseable {

    KvGeometry geometry();

    /** Tokens stored in {@code layer}. */
    int length(int layer);

    /** Appends {@code rows} tokens to {@code layer}; {@code startPos} must equal {@link #length}(layer). */
    void append(int layer, float[] k, float[] v, int rows, int startPos);

    /** Causal softmax attention of {@code rows} queries over what {@code layer} holds; writes {@code out}. */
    void attend(int layer, float[] q, int rows, int queryPos0, float[] out);

    /**
     * The reconstruction of every stored token of {@code layer}: pre-RoPE keys and values,
     * {@code [length][kvDim]} each. For tests and diagnostics; attention does not use it.
     */
    void reconstruct(int layer, float[] keysOut, float[] valuesOut);

    /** Exact bytes of the compressed representation held now (codes, scales, outliers, fp16 tokens). */
    long bytesHeld();

    @Override
    void close();
}
