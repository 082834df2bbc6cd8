// Scores that eviction and selection policies rank cached tokens, clusters or pages by
// (/work/shared/methods.md sections 4, 5, 7, 8.4). Cached keys are read from the paged pool in its
// stored format (kv_layout.cuh), so scores see exactly what attention sees.
#include "kv_layout.cuh"

#define SEL_BLOCK 128

// L2-norm eviction: out[h][i] = ||K_i|| for tokens i < n of one sequence (table = its block table).
// One warp per token.
template <int F>
KV_DEV void key_norms(const uint8_t* kPool, const int* table, int n, float* out, int H, int D, int B, int Gq,
                      long long headBytes, long long blockBytes) {
    const int lane = threadIdx.x & 31;
    const int i = blockIdx.x * (SEL_BLOCK / 32) + (threadIdx.x >> 5), h = blockIdx.y;
    if (i >= n) return;
    int block, t;
    kv_locate(table, i, B, block, t);
    const KvTok<F> k(kv_head(kPool, block, h, headBytes, blockBytes), t, B, D, Gq);
    float ss = 0.0f;
    for (int c = lane; c < D; c += 32) {
        const float v = k(c);
        ss = fmaf(v, v, ss);
    }
    ss = warp_sum(ss);
    if (lane == 0) out[(long long) h * n + i] = sqrtf(ss);
}

// out[r][h] = ||x[r][h]|| for fresh rows ([rows][heads*D] fp32), one warp per head.
extern "C" __global__ void __launch_bounds__(SEL_BLOCK)
l2norm_rows(const float* x, int heads, int D, float* out) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const float* xr = x + (long long) blockIdx.x * heads * D;
    for (int h = warp; h < heads; h += warps) {
        float ss = 0.0f;
        for (int c = lane; c < D; c += 32) ss = fmaf(xr[h * D + c], xr[h * D + c], ss);
        ss = warp_sum(ss);
        if (lane == 0) out[(long long) blockIdx.x * heads + h] = sqrtf(ss);
    }
}

// HashEvict signatures: bit j of out[r][h] is 1 when proj_j . x[r][h] > 0, for j < bits (<= 64).
// proj holds `bits` rows of D floats per head, heads projHeadStride floats apart (0 = one
// projection shared by every head). Used for keys when they are stored and for queries.
extern "C" __global__ void __launch_bounds__(SEL_BLOCK)
simhash_f32(const float* x, int heads, int D, const float* proj, long long projHeadStride, int bits,
            unsigned long long* out) {
    __shared__ int positive[64];
    const int r = blockIdx.x, h = blockIdx.y;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const float* xv = x + ((long long) r * heads + h) * D;
    const float* ph = proj + (long long) h * projHeadStride;
    for (int j = warp; j < bits; j += warps) {
        float dot = 0.0f;
        for (int c = lane; c < D; c += 32) dot = fmaf(ph[(long long) j * D + c], xv[c], dot);
        dot = warp_sum(dot);
        if (lane == 0) positive[j] = dot > 0.0f;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long sig = 0;
        for (int j = 0; j < bits; j++)
            if (positive[j]) sig |= 1ull << j;
        out[(long long) r * heads + h] = sig;
    }
}

// HashEvict scores for one sequence: for token i < n and KV head h, the Hamming distance between
// the signature of K_i (ksig, indexed by slot: [slot][H]) and the signatures of the G query heads
// of h (qsig: [Hq]), reduced over the group by mean (0), max (1) or sum (2). Larger = less similar
// = evicted first. accumulate != 0 adds to out instead of overwriting (the accumulated variant).
extern "C" __global__ void __launch_bounds__(SEL_BLOCK)
hamming_scores(const unsigned long long* qsig, const unsigned long long* ksig, const int* table, int n, int Hq,
               int H, int B, int reduce, int accumulate, float* out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x, h = blockIdx.y;
    if (i >= n) return;
    const int G = Hq / H;
    int block, t;
    kv_locate(table, i, B, block, t);
    const unsigned long long k = ksig[((long long) block * B + t) * H + h];
    float agg = 0.0f;
    for (int g = 0; g < G; g++) {
        const float d = (float) __popcll(qsig[h * G + g] ^ k);
        agg = reduce == 1 ? (g == 0 ? d : fmaxf(agg, d)) : agg + d;
    }
    if (reduce == 0) agg /= (float) G;
    float* o = out + (long long) h * n + i;
    *o = accumulate ? *o + agg : agg;
}

// ClusterKV: out[r][h][j] = q[r][h] . centroid j of KV head h/G. Centroids of row r start at
// centroids + r*centroidRowStride and are laid out [H][nlist][D]. One warp per centroid.
extern "C" __global__ void __launch_bounds__(256)
cluster_scores(const float* q, const float* centroids, long long centroidRowStride, int Hq, int H, int D,
               int nlist, float* out) {
    const int lane = threadIdx.x & 31;
    const int rh = blockIdx.x, r = rh / Hq, h = rh - r * Hq;
    const int j = blockIdx.y * 8 + (threadIdx.x >> 5);
    if (j >= nlist) return;
    const int kvh = h / (Hq / H);
    const float* qv = q + (long long) rh * D;
    const float* cv = centroids + r * centroidRowStride + ((long long) kvh * nlist + j) * D;
    float dot = 0.0f;
    for (int c = lane; c < D; c += 32) dot = fmaf(qv[c], cv[c], dot);
    dot = warp_sum(dot);
    if (lane == 0) out[(long long) rh * nlist + j] = dot;
}

#define CKV_MAX_CLUSTERS 1024

// ClusterKV recall: walk the clusters of `order` (best first, from topk_f32 over cluster_scores,
// -1 ends the list) taking their tokens until `budget` are taken, truncating the last cluster.
// Clusters of KV head h: members tokens[h][offsets[h][c] .. offsets[h][c+1]) (token indices sorted
// by cluster). out[rh][0..count) gets the token indices, the rest -1; outCount[rh] = count.
extern "C" __global__ void __launch_bounds__(SEL_BLOCK)
clusterkv_gather(const int* order, int kc, const int* offsets, const int* tokens, int nlist, int nTok, int Hq,
                 int H, int budget, int* out, int* outCount) {
    __shared__ int start[CKV_MAX_CLUSTERS], take[CKV_MAX_CLUSTERS], dst[CKV_MAX_CLUSTERS];
    __shared__ int used, total;
    const int rh = blockIdx.x, h = rh % Hq, kvh = h / (Hq / H);
    const int* off = offsets + (long long) kvh * (nlist + 1);
    if (threadIdx.x == 0) {
        int n = 0, sum = 0;
        for (int i = 0; i < kc && sum < budget; i++) {
            const int c = order[(long long) rh * kc + i];
            if (c < 0) break;
            const int size = off[c + 1] - off[c];
            const int k = min(size, budget - sum);
            start[n] = off[c];
            take[n] = k;
            dst[n] = sum;
            n++;
            sum += k;
        }
        used = n;
        total = sum;
    }
    __syncthreads();
    int* o = out + (long long) rh * budget;
    const int* tk = tokens + (long long) kvh * nTok;
    for (int i = 0; i < used; i++)
        for (int e = threadIdx.x; e < take[i]; e += blockDim.x) o[dst[i] + e] = tk[start[i] + e];
    for (int e = total + threadIdx.x; e < budget; e += blockDim.x) o[e] = -1;
    if (threadIdx.x == 0) outCount[rh] = total;
}

// Quest page metadata: per block (page) blocks[i] holding counts[i] >= 1 tokens and per KV head,
// the element-wise min and max of its keys: minOut/maxOut[(block*H + h)*D + c].
template <int F>
KV_DEV void quest_bounds(const uint8_t* kPool, const int* blocks, const int* counts, float* minOut, float* maxOut,
                         int H, int D, int B, int Gq, long long headBytes, long long blockBytes) {
    const int block = blocks[blockIdx.x], count = counts[blockIdx.x], h = blockIdx.y;
    const uint8_t* head = kv_head(kPool, block, h, headBytes, blockBytes);
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        float mn = INFINITY, mx = -INFINITY;
        for (int t = 0; t < count; t++) {
            const float v = KvTok<F>(head, t, B, D, Gq)(c);
            mn = fminf(mn, v);
            mx = fmaxf(mx, v);
        }
        const long long o = ((long long) block * H + h) * D + c;
        minOut[o] = mn;
        maxOut[o] = mx;
    }
}

// Quest criticality: out[r][h][p] = sum_c max(q_c * max_c, q_c * min_c) over page p of row r's
// sequence (an upper bound of q . k over the page), -inf for p >= rowPages[r]. One warp per page.
extern "C" __global__ void __launch_bounds__(256)
quest_scores(const float* q, const float* minMeta, const float* maxMeta, const int* blockTables, int maxBlocks,
             const int* rowSeq, const int* rowPages, int Hq, int H, int D, int maxPages, float* out) {
    const int lane = threadIdx.x & 31;
    const int rh = blockIdx.x, r = rh / Hq, h = rh - r * Hq;
    const int p = blockIdx.y * 8 + (threadIdx.x >> 5);
    if (p >= maxPages) return;
    float* o = out + (long long) rh * maxPages + p;
    if (p >= rowPages[r]) {
        if (lane == 0) *o = -INFINITY;
        return;
    }
    const int kvh = h / (Hq / H);
    const int block = blockTables[(long long) rowSeq[r] * maxBlocks + p];
    const float* qv = q + (long long) rh * D;
    const float* mn = minMeta + ((long long) block * H + kvh) * D;
    const float* mx = maxMeta + ((long long) block * H + kvh) * D;
    float s = 0.0f;
    for (int c = lane; c < D; c += 32) s += fmaxf(qv[c] * mx[c], qv[c] * mn[c]);
    s = warp_sum(s);
    if (lane == 0) *o = s;
}

#define DEFINE_KV_SELECT(NAME, FMT)                                                                  \
    extern "C" __global__ void __launch_bounds__(SEL_BLOCK)                                         \
    key_norms_##NAME(const uint8_t* kPool, const int* table, int n, float* out, int H, int D, int B,  \
                     int Gq, long long headBytes, long long blockBytes) {                            \
        key_norms<FMT>(kPool, table, n, out, H, D, B, Gq, headBytes, blockBytes);                    \
    }                                                                                                \
    extern "C" __global__ void __launch_bounds__(SEL_BLOCK)                                         \
    quest_bounds_##NAME(const uint8_t* kPool, const int* blocks, const int* counts, float* minOut,    \
                        float* maxOut, int H, int D, int B, int Gq, long long headBytes,             \
                        long long blockBytes) {                                                      \
        quest_bounds<FMT>(kPool, blocks, counts, minOut, maxOut, H, D, B, Gq, headBytes, blockBytes);\
    }

DEFINE_KV_SELECT(f32, KV_F32)
DEFINE_KV_SELECT(f16, KV_F16)
DEFINE_KV_SELECT(i8, KV_I8)
DEFINE_KV_SELECT(i4, KV_I4)
