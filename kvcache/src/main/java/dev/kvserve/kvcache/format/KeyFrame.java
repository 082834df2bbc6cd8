package dev.kvserve.kvcache.format;

/**
 * Which rotation the stored keys carry. Keys always reach the cache before RoPE; a
 * {@link #POST_ROPE} format receives them rotated at their own position (the usual choice, and what
 * per-token baselines quantize), a {@link #PRE_ROPE} format receives them unrotated (KVQuant,
 * AQUA-KV: their per-channel structure only holds before rotation) and attention rotates them on read.
 */
public enum KeyFrame {
    PRE_ROPE,
    POST_ROPE
}
