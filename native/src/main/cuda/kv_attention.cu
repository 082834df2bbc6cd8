// Paged KV cache: writing new tokens into blocks (quantizing on the way for INT8/INT4) and decode
// attention that reads the blocks directly, codes and per-token scales included, without a
// dequantized copy. Layout: kv_layout.cuh.
#include "kv_layout.cuh"

#define KVW_THREADS 128

// Writes row r of src ([rows][H*D] fp32) for head blockIdx.y into slot slots[r] (skipped when
// negative). Quantized formats: one warp per group of Gq channels.
template <int F>
KV_DEV void kv_write(uint8_t* pool, const float* src, const int* slots, int H, int D, int B, int Gq,
                     long long headBytes, long long blockBytes) {
    const int r = blockIdx.x, h = blockIdx.y;
    const int slot = slots[r];
    if (slot < 0) return;   // the whole block leaves; no barrier in this kernel
    const int block = slot / B, t = slot - block * B;
    uint8_t* head = pool + (long long) block * blockBytes + (long long) h * headBytes;
    const float* x = src + ((long long) r * H + h) * D;
    if (F == KV_F32) {
        float* p = reinterpret_cast<float*>(head) + t * D;
        for (int c = threadIdx.x; c < D; c += blockDim.x) p[c] = x[c];
        return;
    }
    if (F == KV_F16) {
        uint16_t* p = reinterpret_cast<uint16_t*>(head) + t * D;
        for (int c = threadIdx.x; c < D; c += blockDim.x) p[c] = f32_to_f16(x[c]);
        return;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const int groups = D / Gq;
    for (int g = warp; g < groups; g += warps) {
        const float* xg = x + g * Gq;
        if (F == KV_I8) {
            float amax = 0.0f;
            for (int c = lane; c < Gq; c += 32) amax = fmaxf(amax, fabsf(xg[c]));
            amax = warp_max(amax);
            const uint16_t sh = f32_to_f16(amax / 127.0f);
            const float s = f16_to_f32(sh);
            int8_t* codes = reinterpret_cast<int8_t*>(head) + t * D + g * Gq;
            for (int c = lane; c < Gq; c += 32) {
                int q = 0;
                if (s > 0.0f) q = max(-127, min(127, (int) rintf(xg[c] / s)));
                codes[c] = (int8_t) q;
            }
            if (lane == 0) reinterpret_cast<uint16_t*>(head + kv_params_offset(B, D))[t * groups + g] = sh;
        } else {   // KV_I4: lanes take channel pairs so that each writes whole bytes
            float mn = INFINITY, mx = -INFINITY;
            for (int c = lane; c < Gq; c += 32) {
                mn = fminf(mn, xg[c]);
                mx = fmaxf(mx, xg[c]);
            }
            mn = warp_min(mn);
            mx = warp_max(mx);
            const uint16_t sh = f32_to_f16((mx - mn) / 15.0f);
            const uint16_t mh = f32_to_f16(mn);
            const float s = f16_to_f32(sh), m = f16_to_f32(mh);
            uint8_t* codes = head + t * (D >> 1) + ((g * Gq) >> 1);
            for (int p = lane; p < (Gq >> 1); p += 32) {
                int q0 = 0, q1 = 0;
                if (s > 0.0f) {
                    q0 = max(0, min(15, (int) rintf((xg[2 * p] - m) / s)));
                    q1 = max(0, min(15, (int) rintf((xg[2 * p + 1] - m) / s)));
                }
                codes[p] = (uint8_t) (q0 | (q1 << 4));
            }
            if (lane == 0) {
                uint16_t* params = reinterpret_cast<uint16_t*>(head + kv_params_offset(B, D >> 1)) + 2 * (t * groups + g);
                params[0] = sh;
                params[1] = mh;
            }
        }
    }
}

#define ATT_THREADS 128
#define ATT_WARPS 4
#define ATT_MAXG 8

// Split-K ("flash decoding") attention of query rows over their sequences' paged cache.
//
// grid = (rows, H * ceil(G / ATT_MAXG), splits); block = 4 warps. Block (r, y, s) takes the query
// heads of KV head y / chunks that fall in chunk y % chunks (up to 8 heads of one GQA group, so
// each K/V token is loaded once for the whole group) and the tokens
// [s*splitTokens, min(ctx, (s+1)*splitTokens)) of row r's sequence, where ctx = rowCtx[r] is how
// many tokens the row sees (position + 1 for causal decode). Warps take every 4th token; lanes
// hold channels lane, lane+32, ... (CPL of them). Each block writes, per head, its running max,
// its sum of exp(score - max) and its unnormalised output; paged_attn_merge combines the splits.
template <int F, int CPL>
KV_DEV void paged_attn(const float* q, const uint8_t* kPool, const uint8_t* vPool, const int* blockTables,
                       int maxBlocks, const int* rowSeq, const int* rowCtx, float* partAcc, float* partMax,
                       float* partSum, int Hq, int H, int D, int B, int Gq, long long headBytes,
                       long long blockBytes, int splitTokens, float scale) {
    __shared__ float sm[ATT_WARPS][ATT_MAXG];
    __shared__ float sl[ATT_WARPS][ATT_MAXG];
    __shared__ float sacc[ATT_WARPS][ATT_MAXG][CPL * 32];
    const int r = blockIdx.x, s = blockIdx.z, splits = gridDim.z;
    const int G = Hq / H, chunks = (G + ATT_MAXG - 1) / ATT_MAXG;
    const int kvh = blockIdx.y / chunks, chunk = blockIdx.y - kvh * chunks;
    const int h0 = kvh * G + chunk * ATT_MAXG;
    const int nh = min(ATT_MAXG, G - chunk * ATT_MAXG);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int ctx = rowCtx[r];
    const int* table = blockTables + (long long) rowSeq[r] * maxBlocks;
    const int t0 = s * splitTokens, t1 = min(ctx, t0 + splitTokens);

    float qr[ATT_MAXG][CPL], acc[ATT_MAXG][CPL], m[ATT_MAXG], l[ATT_MAXG];
    const float* qrow = q + (long long) r * Hq * D;
#pragma unroll
    for (int g = 0; g < ATT_MAXG; g++) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int i = 0; i < CPL; i++) {
            const int c = lane + 32 * i;
            qr[g][i] = (g < nh && c < D) ? qrow[(h0 + g) * D + c] * scale : 0.0f;
            acc[g][i] = 0.0f;
        }
    }

    for (int t = t0 + warp; t < t1; t += ATT_WARPS) {
        int block, tb;
        kv_locate(table, t, B, block, tb);
        const KvTok<F> kt(kv_head(kPool, block, kvh, headBytes, blockBytes), tb, B, D, Gq);
        const KvTok<F> vt(kv_head(vPool, block, kvh, headBytes, blockBytes), tb, B, D, Gq);
        float kv[CPL], vv[CPL];
#pragma unroll
        for (int i = 0; i < CPL; i++) {
            const int c = lane + 32 * i;
            kv[i] = c < D ? kt(c) : 0.0f;
            vv[i] = c < D ? vt(c) : 0.0f;
        }
#pragma unroll
        for (int g = 0; g < ATT_MAXG; g++) {
            if (g < nh) {
                float dot = 0.0f;
#pragma unroll
                for (int i = 0; i < CPL; i++) dot = fmaf(qr[g][i], kv[i], dot);
                dot = warp_sum(dot);
                const float mNew = fmaxf(m[g], dot);
                const float alpha = expf(m[g] - mNew);
                const float p = expf(dot - mNew);
                l[g] = l[g] * alpha + p;
#pragma unroll
                for (int i = 0; i < CPL; i++) acc[g][i] = fmaf(p, vv[i], acc[g][i] * alpha);
                m[g] = mNew;
            }
        }
    }

#pragma unroll
    for (int g = 0; g < ATT_MAXG; g++) {
        if (lane == 0) {
            sm[warp][g] = m[g];
            sl[warp][g] = l[g];
        }
#pragma unroll
        for (int i = 0; i < CPL; i++) sacc[warp][g][lane + 32 * i] = acc[g][i];
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < nh * D; idx += blockDim.x) {
        const int g = idx / D, c = idx - g * D;
        float mx = -INFINITY;
        for (int w = 0; w < ATT_WARPS; w++) mx = fmaxf(mx, sm[w][g]);
        float sum = 0.0f, out = 0.0f;
        if (mx != -INFINITY) {
            for (int w = 0; w < ATT_WARPS; w++) {
                const float f = expf(sm[w][g] - mx);   // 0 for warps that saw no token
                sum += sl[w][g] * f;
                out += sacc[w][g][c] * f;
            }
        }
        const long long part = ((long long) r * Hq + h0 + g) * splits + s;
        partAcc[part * D + c] = out;
        if (c == 0) {
            partMax[part] = mx;
            partSum[part] = sum;
        }
    }
}

// out[r][h] = sum over splits of partAcc * exp(partMax - M) / sum of partSum * exp(partMax - M).
// A row that sees no token at all gets zeros.
extern "C" __global__ void __launch_bounds__(ATT_THREADS)
paged_attn_merge(const float* partAcc, const float* partMax, const float* partSum, float* out, int Hq, int D,
                 int splits) {
    const int r = blockIdx.x, h = blockIdx.y;
    const long long base = ((long long) r * Hq + h) * splits;
    float mx = -INFINITY;
    for (int s = 0; s < splits; s++) mx = fmaxf(mx, partMax[base + s]);
    float den = 0.0f;
    if (mx != -INFINITY)
        for (int s = 0; s < splits; s++) den += partSum[base + s] * expf(partMax[base + s] - mx);
    float* o = out + ((long long) r * Hq + h) * D;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        float num = 0.0f;
        if (mx != -INFINITY)
            for (int s = 0; s < splits; s++) num += partAcc[(base + s) * D + c] * expf(partMax[base + s] - mx);
        o[c] = den > 0.0f ? num / den : 0.0f;
    }
}

#define DEFINE_KV_WRITE(NAME, FMT)                                                                   \
    extern "C" __global__ void __launch_bounds__(KVW_THREADS)                                       \
    kv_write_##NAME(uint8_t* pool, const float* src, const int* slots, int H, int D, int B, int Gq,  \
                    long long headBytes, long long blockBytes) {                                     \
        kv_write<FMT>(pool, src, slots, H, D, B, Gq, headBytes, blockBytes);                         \
    }

#define DEFINE_PAGED_ATTN(NAME, FMT, CPL)                                                            \
    extern "C" __global__ void __launch_bounds__(ATT_THREADS)                                       \
    paged_attn_##NAME##_cpl##CPL(const float* q, const uint8_t* kPool, const uint8_t* vPool,           \
                               const int* blockTables, int maxBlocks, const int* rowSeq,             \
                               const int* rowCtx, float* partAcc, float* partMax, float* partSum,    \
                               int Hq, int H, int D, int B, int Gq, long long headBytes,             \
                               long long blockBytes, int splitTokens, float scale) {                 \
        paged_attn<FMT, CPL>(q, kPool, vPool, blockTables, maxBlocks, rowSeq, rowCtx, partAcc,       \
                             partMax, partSum, Hq, H, D, B, Gq, headBytes, blockBytes, splitTokens,  \
                             scale);                                                                 \
    }

#define DEFINE_KV_FORMAT(NAME, FMT)     \
    DEFINE_KV_WRITE(NAME, FMT)          \
    DEFINE_PAGED_ATTN(NAME, FMT, 1)     \
    DEFINE_PAGED_ATTN(NAME, FMT, 2)     \
    DEFINE_PAGED_ATTN(NAME, FMT, 4)     \
    DEFINE_PAGED_ATTN(NAME, FMT, 8)

DEFINE_KV_FORMAT(f32, KV_F32)
DEFINE_KV_FORMAT(f16, KV_F16)
DEFINE_KV_FORMAT(i8, KV_I8)
DEFINE_KV_FORMAT(i4, KV_I4)
