// Element-wise and row-wise ops of the decoder: RMSNorm, RoPE, SiLU-mul, add, bias add, embedding
// gather and softmax. Activations are row-major fp32.
#include "ggml_blocks.cuh"

#define OPS_THREADS 256

// One block per row. out may alias x: each thread reads x[i] before it writes out[i].
extern "C" __global__ void __launch_bounds__(OPS_THREADS)
rmsnorm_f32(float* out, const float* x, const float* weight, int dim, float eps) {
    __shared__ float scratch[33];
    const long long base = (long long) blockIdx.x * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = x[base + i];
        ss = fmaf(v, v, ss);
    }
    ss = block_sum(ss, scratch);
    const float scale = rsqrtf(ss / (float) dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) out[base + i] = x[base + i] * scale * weight[i];
}

// Rotates the leading `dims` values of every head of row blockIdx.x at position positions[row].
// The angle is computed in double, as RopeConfig.theta does on the CPU: at positions in the
// hundreds of thousands an fp32 angle would be off by more than 0.01 rad.
// neox != 0 pairs value i with i + dims/2 ("rotate half"); otherwise 2i with 2i+1.
extern "C" __global__ void __launch_bounds__(OPS_THREADS)
rope_f32(float* x, const int* positions, int heads, int headDim, int dims, float freqBase,
         float freqScale, int neox) {
    const int row = blockIdx.x;
    const int half = dims >> 1;
    const double pos = (double) positions[row] * (double) freqScale;
    float* xr = x + (long long) row * heads * headDim;
    for (int k = threadIdx.x; k < heads * half; k += blockDim.x) {
        const int h = k / half, i = k - h * half;
        const double theta = pos * pow((double) freqBase, -2.0 * i / dims);
        double s, c;
        sincos(theta, &s, &c);
        const float cf = (float) c, sf = (float) s;
        float* hp = xr + h * headDim;
        const int i0 = neox ? i : 2 * i;
        const int i1 = neox ? i + half : 2 * i + 1;
        const float a = hp[i0], b = hp[i1];
        hp[i0] = a * cf - b * sf;
        hp[i1] = a * sf + b * cf;
    }
}

extern "C" __global__ void __launch_bounds__(OPS_THREADS)
silu_mul_f32(float* gate, const float* up, long long n) {
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n;
         i += (long long) gridDim.x * blockDim.x) {
        const float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

extern "C" __global__ void __launch_bounds__(OPS_THREADS)
add_f32(float* acc, const float* x, long long n) {
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n;
         i += (long long) gridDim.x * blockDim.x)
        acc[i] += x[i];
}

extern "C" __global__ void __launch_bounds__(OPS_THREADS)
add_bias_f32(float* x, const float* bias, int dim, long long n) {
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n;
         i += (long long) gridDim.x * blockDim.x)
        x[i] += bias[i % dim];
}

// out[b] = row tokens[b] of the table, dequantized. One block per output row.
template <int T>
KV_DEV void embed(const uint8_t* table, const int* tokens, float* out, int cols, long long rowBytes) {
    const uint8_t* row = table + (long long) tokens[blockIdx.x] * rowBytes;
    float* o = out + (long long) blockIdx.x * cols;
    const int groups = cols >> 3;
    for (int g = threadIdx.x; g < groups; g += blockDim.x) {
        float v[8];
        RowFormat<T>::group(row, g, v);
#pragma unroll
        for (int e = 0; e < 8; e++) o[8 * g + e] = v[e];
    }
    if (RowFormat<T>::partialGroups)
        for (int c = groups * 8 + threadIdx.x; c < cols; c += blockDim.x) o[c] = RowFormat<T>::one(row, c);
}

#define DEFINE_EMBED(NAME, TYPE)                                                                  \
    extern "C" __global__ void __launch_bounds__(OPS_THREADS)                                    \
    embed_##NAME(const uint8_t* table, const int* tokens, float* out, int cols, long long rowBytes) { \
        embed<TYPE>(table, tokens, out, cols, rowBytes);                                          \
    }

DEFINE_EMBED(f32, GGML_F32)
DEFINE_EMBED(f16, GGML_F16)
DEFINE_EMBED(bf16, GGML_BF16)
DEFINE_EMBED(q4_0, GGML_Q4_0)
DEFINE_EMBED(q8_0, GGML_Q8_0)
DEFINE_EMBED(q4_k, GGML_Q4_K)
DEFINE_EMBED(q6_k, GGML_Q6_K)

// In-place softmax of row blockIdx.x, max-subtracted.
extern "C" __global__ void __launch_bounds__(OPS_THREADS)
softmax_f32(float* x, int dim) {
    __shared__ float scratch[33];
    float* r = x + (long long) blockIdx.x * dim;
    float m = -INFINITY;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) m = fmaxf(m, r[i]);
    m = block_max(m, scratch);
    float s = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float e = expf(r[i] - m);
        r[i] = e;
        s += e;
    }
    s = block_sum(s, scratch);
    const float inv = 1.0f / s;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) r[i] *= inv;
}
