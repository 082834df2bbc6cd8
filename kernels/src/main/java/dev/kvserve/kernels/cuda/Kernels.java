package dev.kvserve.kernels.cuda;

import static dev.kvserve.nativ.cuda.ParamKind.F32;
import static dev.kvserve.nativ.cuda.ParamKind.I32;
import static dev.kvserve.nativ.cuda.ParamKind.I64;
import static dev.kvserve.nativ.cuda.ParamKind.PTR;

import dev.kvserve.kernels.GgmlType;
import dev.kvserve.nativ.cuda.ParamKind;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * Every kernel of native/src/main/cuda that Java launches, with the signature and block size the
 * .cu file declares. The thread counts must match the sources' __launch_bounds__ and the block
 * shapes the kernels assume (e.g. 8 warps per matvec block).
 */
public final class Kernels {

    private Kernels() {}

    /** Weight formats with matmul and embedding kernels, by the name suffix the kernels use. */
    static final Map<GgmlType, String> WEIGHT_SUFFIX = new EnumMap<>(GgmlType.class);

    static {
        WEIGHT_SUFFIX.put(GgmlType.F32, "f32");
        WEIGHT_SUFFIX.put(GgmlType.F16, "f16");
        WEIGHT_SUFFIX.put(GgmlType.BF16, "bf16");
        WEIGHT_SUFFIX.put(GgmlType.Q4_0, "q4_0");
        WEIGHT_SUFFIX.put(GgmlType.Q8_0, "q8_0");
        WEIGHT_SUFFIX.put(GgmlType.Q4_K, "q4_k");
        WEIGHT_SUFFIX.put(GgmlType.Q6_K, "q6_k");
    }

    /** Activation rows one matvec block handles; larger batches use more blocks along y. */
    static final int MATVEC_ROWS_PER_BLOCK = 8;
    static final int MATVEC_BATCH_PER_BLOCK = 8;
    /** Output tile edge of matmat (weight rows and batch rows). */
    static final int MATMAT_TILE = 64;
    /** Query heads of one GQA group that one attention block handles. */
    static final int ATTENTION_MAX_GROUP = 8;
    static final int ATTENTION_WARPS = 4;
    static final int CLUSTERKV_MAX_CLUSTERS = 1024;
    static final int SIMHASH_MAX_BITS = 64;

    private static final List<ParamKind> MATMUL = List.of(PTR, PTR, PTR, I32, I32, I32, I64);
    private static final List<ParamKind> EMBED = List.of(PTR, PTR, PTR, I32, I64);
    private static final List<ParamKind> KV_WRITE = List.of(PTR, PTR, PTR, I32, I32, I32, I32, I64, I64);
    private static final List<ParamKind> PAGED_ATTN = List.of(PTR, PTR, PTR, PTR, I32, PTR, PTR, PTR, PTR, PTR,
            I32, I32, I32, I32, I32, I64, I64, I32, F32);
    private static final List<ParamKind> KEY_NORMS = List.of(PTR, PTR, I32, PTR, I32, I32, I32, I32, I64, I64);
    private static final List<ParamKind> QUEST_BOUNDS = List.of(PTR, PTR, PTR, PTR, PTR, I32, I32, I32, I32, I64, I64);

    public static KernelSpec matvec(GgmlType t) {
        return new KernelSpec("matmul", "matvec_" + suffix(t), 256, MATMUL);
    }

    public static KernelSpec matmat(GgmlType t) {
        return new KernelSpec("matmul", "matmat_" + suffix(t), 256, MATMUL);
    }

    public static KernelSpec embed(GgmlType t) {
        return new KernelSpec("ops", "embed_" + suffix(t), 256, EMBED);
    }

    public static final KernelSpec RMSNORM = new KernelSpec("ops", "rmsnorm_f32", 256, List.of(PTR, PTR, PTR, I32, F32));
    public static final KernelSpec ROPE = new KernelSpec("ops", "rope_f32", 256,
            List.of(PTR, PTR, I32, I32, I32, F32, F32, I32));
    public static final KernelSpec SILU_MUL = new KernelSpec("ops", "silu_mul_f32", 256, List.of(PTR, PTR, I64));
    public static final KernelSpec ADD = new KernelSpec("ops", "add_f32", 256, List.of(PTR, PTR, I64));
    public static final KernelSpec ADD_BIAS = new KernelSpec("ops", "add_bias_f32", 256, List.of(PTR, PTR, I32, I64));
    public static final KernelSpec SOFTMAX = new KernelSpec("ops", "softmax_f32", 256, List.of(PTR, I32));

    public static final KernelSpec ARGMAX = new KernelSpec("sampling", "argmax_f32", 256, List.of(PTR, I32, PTR));
    public static final KernelSpec TOPK = new KernelSpec("sampling", "topk_f32", 256, List.of(PTR, I32, I32, PTR, PTR));

    public static KernelSpec kvWrite(KvFormat f) {
        return new KernelSpec("kv_attention", "kv_write_" + f.suffix, 128, KV_WRITE);
    }

    /** Attention kernel for heads of up to 32 * channelsPerLane values (1, 2, 4 or 8). */
    public static KernelSpec pagedAttention(KvFormat f, int channelsPerLane) {
        return new KernelSpec("kv_attention", "paged_attn_" + f.suffix + "_cpl" + channelsPerLane, 128, PAGED_ATTN);
    }

    public static final KernelSpec PAGED_ATTN_MERGE = new KernelSpec("kv_attention", "paged_attn_merge", 128,
            List.of(PTR, PTR, PTR, PTR, I32, I32, I32));

    public static KernelSpec keyNorms(KvFormat f) {
        return new KernelSpec("kv_select", "key_norms_" + f.suffix, 128, KEY_NORMS);
    }

    public static KernelSpec questBounds(KvFormat f) {
        return new KernelSpec("kv_select", "quest_bounds_" + f.suffix, 128, QUEST_BOUNDS);
    }

    public static final KernelSpec L2NORM_ROWS = new KernelSpec("kv_select", "l2norm_rows", 128,
            List.of(PTR, I32, I32, PTR));
    public static final KernelSpec SIMHASH = new KernelSpec("kv_select", "simhash_f32", 128,
            List.of(PTR, I32, I32, PTR, I64, I32, PTR));
    public static final KernelSpec HAMMING = new KernelSpec("kv_select", "hamming_scores", 128,
            List.of(PTR, PTR, PTR, I32, I32, I32, I32, I32, I32, PTR));
    public static final KernelSpec CLUSTER_SCORES = new KernelSpec("kv_select", "cluster_scores", 256,
            List.of(PTR, PTR, I64, I32, I32, I32, I32, PTR));
    public static final KernelSpec CLUSTERKV_GATHER = new KernelSpec("kv_select", "clusterkv_gather", 128,
            List.of(PTR, I32, PTR, PTR, I32, I32, I32, I32, I32, PTR, PTR));
    public static final KernelSpec QUEST_SCORES = new KernelSpec("kv_select", "quest_scores", 256,
            List.of(PTR, PTR, PTR, PTR, I32, PTR, PTR, I32, I32, I32, I32, PTR));

    /** Every kernel the backend can launch (for tests that hold them against the PTX). */
    public static List<KernelSpec> all() {
        List<KernelSpec> all = new ArrayList<>();
        for (GgmlType t : WEIGHT_SUFFIX.keySet()) {
            all.add(matvec(t));
            all.add(matmat(t));
            all.add(embed(t));
        }
        all.addAll(List.of(RMSNORM, ROPE, SILU_MUL, ADD, ADD_BIAS, SOFTMAX, ARGMAX, TOPK, PAGED_ATTN_MERGE,
                L2NORM_ROWS, SIMHASH, HAMMING, CLUSTER_SCORES, CLUSTERKV_GATHER, QUEST_SCORES));
        for (KvFormat f : KvFormat.values()) {
            all.add(kvWrite(f));
            all.add(keyNorms(f));
            all.add(questBounds(f));
            for (int cpl : new int[] {1, 2, 4, 8}) all.add(pagedAttention(f, cpl));
        }
        return Collections.unmodifiableList(all);
    }

    static String suffix(GgmlType t) {
        String s = WEIGHT_SUFFIX.get(t);
        if (s == null) {
            throw new IllegalArgumentException("the CUDA backend has no kernels for " + t + " weights (supported: "
                    + WEIGHT_SUFFIX.keySet() + ")");
        }
        return s;
    }
}
