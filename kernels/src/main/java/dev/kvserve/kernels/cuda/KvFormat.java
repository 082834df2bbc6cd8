package dev.kvserve.kernels.cuda;

/** Storage formats of the paged KV blocks the CUDA kernels read and write (see {@link PagedKvLayout}). */
public enum KvFormat {
    F32("f32"),
    F16("f16"),
    /** int8 codes, symmetric, one fp16 scale per token, head and group of channels. */
    INT8("i8"),
    /** 4-bit codes (two per byte), asymmetric, one fp16 (scale, min) per token, head and group. */
    INT4("i4");

    final String suffix;

    KvFormat(String suffix) {
        this.suffix = suffix;
    }
}
