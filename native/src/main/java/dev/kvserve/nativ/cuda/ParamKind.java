package dev.kvserve.nativ.cuda;

import java.util.Set;

/**
 * The kinds of kernel parameter KVServe's kernels take, with the C types they stand for and the
 * PTX parameter types nvcc writes for them (so a declared signature can be checked against PTX).
 */
public enum ParamKind {
    /** A device pointer (any {@code T*}). */
    PTR(8, Set.of("u64", "b64")),
    /** {@code int}. */
    I32(4, Set.of("u32", "s32", "b32")),
    /** {@code long long}. */
    I64(8, Set.of("u64", "s64", "b64")),
    /** {@code float}. */
    F32(4, Set.of("f32", "b32"));

    /** Bytes the kernel reads for the parameter. */
    public final int bytes;
    /** PTX {@code .param} types that nvcc may emit for it. */
    public final Set<String> ptxTypes;

    ParamKind(int bytes, Set<String> ptxTypes) {
        this.bytes = bytes;
        this.ptxTypes = ptxTypes;
    }
}
