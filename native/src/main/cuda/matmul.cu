// out[b][r] = sum_c W[r][c] * x[b][c] for weights in any supported ggml format.
//
// matvec_*: decode-sized batches. One warp per weight row, 8 rows per 256-thread block, and up to
//           MV_BATCH activation rows per block (grid.y covers larger batches), so each weight
//           group is dequantized once per MV_BATCH activations. Memory bound on the weights.
// matmat_*: prefill-sized batches. 64x64 output tiles, weights dequantized into shared memory a
//           32-column slice at a time, 4x4 outputs per thread.
// Both accumulate in fp32.
#include "ggml_blocks.cuh"

#define MV_ROWS 8
#define MV_BATCH 8
#define MV_THREADS (MV_ROWS * 32)

template <int T>
KV_DEV void matvec(const uint8_t* __restrict__ w, const float* __restrict__ x, float* __restrict__ out,
                   int cols, int rows, int batch, long long rowBytes) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * MV_ROWS + (threadIdx.x >> 5);
    const int b0 = blockIdx.y * MV_BATCH;
    if (row >= rows) return;   // whole warp leaves together; no block barrier follows
    const int nb = min(MV_BATCH, batch - b0);
    const uint8_t* wr = w + (long long) row * rowBytes;
    const float* xb = x + (long long) b0 * cols;
    float acc[MV_BATCH];
#pragma unroll
    for (int b = 0; b < MV_BATCH; b++) acc[b] = 0.0f;

    const int groups = cols >> 3;
    for (int g = lane; g < groups; g += 32) {
        float v[8];
        RowFormat<T>::group(wr, g, v);
#pragma unroll
        for (int b = 0; b < MV_BATCH; b++) {
            if (b < nb) {
                const float* xp = xb + (long long) b * cols + 8 * g;
                float s = 0.0f;
#pragma unroll
                for (int e = 0; e < 8; e++) s = fmaf(v[e], xp[e], s);
                acc[b] += s;
            }
        }
    }
    if (RowFormat<T>::partialGroups) {   // float rows may end in a partial group
        for (int c = groups * 8 + lane; c < cols; c += 32) {
            const float wv = RowFormat<T>::one(wr, c);
#pragma unroll
            for (int b = 0; b < MV_BATCH; b++)
                if (b < nb) acc[b] = fmaf(wv, xb[(long long) b * cols + c], acc[b]);
        }
    }
#pragma unroll
    for (int b = 0; b < MV_BATCH; b++) {
        const float s = warp_sum(acc[b]);
        if (lane == 0 && b < nb) out[(long long) (b0 + b) * rows + row] = s;
    }
}

#define MM_TILE 64
#define MM_K 32
#define MM_THREADS 256

template <int T>
KV_DEV void matmat(const uint8_t* __restrict__ w, const float* __restrict__ x, float* __restrict__ out,
                   int cols, int rows, int batch, long long rowBytes) {
    __shared__ float ws[MM_K][MM_TILE + 4];   // [k][weight row], padded against bank conflicts
    __shared__ float xs[MM_K][MM_TILE + 4];   // [k][batch row]
    const int tid = threadIdx.x;
    const int tx = tid & 15, ty = tid >> 4;   // thread owns weight rows tx*4.. and batch rows ty*4..
    const int row0 = blockIdx.x * MM_TILE, b0 = blockIdx.y * MM_TILE;
    const int loadRow = tid >> 2, loadPart = tid & 3;   // each thread loads 8 values of one row
    float acc[4][4];
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[j][i] = 0.0f;

    for (int k0 = 0; k0 < cols; k0 += MM_K) {
        const int c = k0 + loadPart * 8;
        float v[8];
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = 0.0f;
        const int r = row0 + loadRow;
        if (r < rows && c < cols) {
            const uint8_t* wr = w + (long long) r * rowBytes;
            if (!RowFormat<T>::partialGroups || c + 8 <= cols) {
                RowFormat<T>::group(wr, c >> 3, v);
            } else {
                for (int e = 0; e < 8 && c + e < cols; e++) v[e] = RowFormat<T>::one(wr, c + e);
            }
        }
#pragma unroll
        for (int e = 0; e < 8; e++) ws[loadPart * 8 + e][loadRow] = v[e];

        const int b = b0 + loadRow;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const int ce = c + e;
            xs[loadPart * 8 + e][loadRow] = (b < batch && ce < cols) ? x[(long long) b * cols + ce] : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int k = 0; k < MM_K; k++) {
            float wv[4], xv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) wv[i] = ws[k][tx * 4 + i];
#pragma unroll
            for (int j = 0; j < 4; j++) xv[j] = xs[k][ty * 4 + j];
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int i = 0; i < 4; i++) acc[j][i] = fmaf(wv[i], xv[j], acc[j][i]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const int b = b0 + ty * 4 + j;
        if (b >= batch) continue;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int r = row0 + tx * 4 + i;
            if (r < rows) out[(long long) b * rows + r] = acc[j][i];
        }
    }
}

#define DEFINE_MATMUL(NAME, TYPE)                                                                   \
    extern "C" __global__ void __launch_bounds__(MV_THREADS)                                       \
    matvec_##NAME(const uint8_t* w, const float* x, float* out, int cols, int rows, int batch,      \
                  long long rowBytes) {                                                             \
        matvec<TYPE>(w, x, out, cols, rows, batch, rowBytes);                                       \
    }                                                                                               \
    extern "C" __global__ void __launch_bounds__(MM_THREADS)                                       \
    matmat_##NAME(const uint8_t* w, const float* x, float* out, int cols, int rows, int batch,      \
                  long long rowBytes) {                                                             \
        matmat<TYPE>(w, x, out, cols, rows, batch, rowBytes);                                       \
    }

DEFINE_MATMUL(f32, GGML_F32)
DEFINE_MATMUL(f16, GGML_F16)
DEFINE_MATMUL(bf16, GGML_BF16)
DEFINE_MATMUL(q4_0, GGML_Q4_0)
DEFINE_MATMUL(q8_0, GGML_Q8_0)
DEFINE_MATMUL(q4_k, GGML_Q4_K)
DEFINE_MATMUL(q6_k, GGML_Q6_K)
