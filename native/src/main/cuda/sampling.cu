// Selection kernels: argmax of logits (greedy decoding) and top-k of any score rows (sampling
// candidates, ClusterKV clusters, Quest pages). Order: larger value first, ties to the lower
// index; NaN is never selected. Both use one block per row.
#include "common.cuh"

#define SEL_THREADS 256

// Best (value, index) of the block, every thread gets it. sv/si hold SEL_THREADS/32 entries + 1.
KV_DEV void block_best(float& v, int& i, float* sv, int* si) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(FULL_MASK, v, o);
        const int oi = __shfl_xor_sync(FULL_MASK, i, o);
        if (oi >= 0 && ranks_before(ov, oi, v, i)) { v = ov; i = oi; }
    }
    if (lane == 0) { sv[warp] = v; si[warp] = i; }
    __syncthreads();
    if (threadIdx.x == 0) {
        float bv = sv[0];
        int bi = si[0];
        for (int w = 1; w < warps; w++)
            if (si[w] >= 0 && ranks_before(sv[w], si[w], bv, bi)) { bv = sv[w]; bi = si[w]; }
        sv[SEL_THREADS / 32] = bv;
        si[SEL_THREADS / 32] = bi;
    }
    __syncthreads();
    v = sv[SEL_THREADS / 32];
    i = si[SEL_THREADS / 32];
    __syncthreads();
}

// out[row] = index of the largest value of x[row][0..n), -1 when every value is NaN.
extern "C" __global__ void __launch_bounds__(SEL_THREADS)
argmax_f32(const float* x, int n, int* out) {
    __shared__ float sv[SEL_THREADS / 32 + 1];
    __shared__ int si[SEL_THREADS / 32 + 1];
    const float* r = x + (long long) blockIdx.x * n;
    float bv = -INFINITY;
    int bi = -1;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const float v = r[j];
        if (v == v && ranks_before(v, j, bv, bi)) { bv = v; bi = j; }
    }
    block_best(bv, bi, sv, si);
    if (threadIdx.x == 0) out[blockIdx.x] = bi;
}

// The k best entries of each row, best first: k rounds, each finding the best entry that ranks
// after the previous round's winner. k * n reads per row, which for k up to a few hundred and
// n up to a vocabulary is a few hundred microseconds at worst and needs no scratch memory.
// Rows with fewer than k non-NaN values end in index -1, value -inf.
extern "C" __global__ void __launch_bounds__(SEL_THREADS)
topk_f32(const float* x, int n, int k, int* outIndex, float* outValue) {
    __shared__ float sv[SEL_THREADS / 32 + 1];
    __shared__ int si[SEL_THREADS / 32 + 1];
    const float* r = x + (long long) blockIdx.x * n;
    float pv = INFINITY;
    int pi = -1;   // previous winner; -1 before the first round
    for (int round = 0; round < k; round++) {
        float bv = -INFINITY;
        int bi = -1;
        if (round == 0 || pi >= 0) {
            for (int j = threadIdx.x; j < n; j += blockDim.x) {
                const float v = r[j];
                const bool after = pi < 0 || v < pv || (v == pv && j > pi);
                if (v == v && after && ranks_before(v, j, bv, bi)) { bv = v; bi = j; }
            }
        }
        block_best(bv, bi, sv, si);
        if (threadIdx.x == 0) {
            outIndex[(long long) blockIdx.x * k + round] = bi;
            outValue[(long long) blockIdx.x * k + round] = bi >= 0 ? bv : -INFINITY;
        }
        pv = bv;
        pi = bi;
    }
}
