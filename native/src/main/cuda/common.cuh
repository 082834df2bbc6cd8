// Shared helpers of every KVServe kernel file.
//
// The same sources compile two ways: with nvcc to PTX (the real kernels), and with g++ and
// KVSERVE_EMU defined against cuemu.h, a CPU executor that runs each thread block as fibers,
// so that kernel logic is testable on machines without a GPU. Anything the two builds must do
// differently lives in this header.
#pragma once

#ifdef KVSERVE_EMU
#include "cuemu.h"
#else
#include <cuda_fp16.h>
#include <stdint.h>
#endif

#define KV_DEV __device__ __forceinline__

// Kernels are launched with 1-D thread blocks of these sizes; the Java side uses the same numbers.
#define KV_WARP 32
#define FULL_MASK 0xffffffffu

// ggml type ids (ggml.h) of the weight formats that have kernels.
#define GGML_F32 0
#define GGML_F16 1
#define GGML_Q4_0 2
#define GGML_Q8_0 8
#define GGML_Q4_K 12
#define GGML_Q6_K 14
#define GGML_BF16 30

KV_DEV float f16_to_f32(uint16_t h) {
#ifdef KVSERVE_EMU
    return emu_half_to_float(h);
#else
    return __half2float(__ushort_as_half(h));
#endif
}

// Round to nearest even, as Java's Float.floatToFloat16 does, so that stored fp16 values match the
// CPU reference bit for bit.
KV_DEV uint16_t f32_to_f16(float f) {
#ifdef KVSERVE_EMU
    return emu_float_to_half(f);
#else
    return __half_as_ushort(__float2half_rn(f));
#endif
}

KV_DEV float bf16_to_f32(uint16_t b) {
    return __uint_as_float(((uint32_t) b) << 16);
}

// Little-endian 16-bit load from a byte pointer that is only 2-byte aligned (ggml blocks of 18,
// 34 and 210 bytes leave wider loads misaligned).
KV_DEV uint16_t load_u16(const uint8_t* p) {
    return *reinterpret_cast<const uint16_t*>(p);
}

KV_DEV float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

KV_DEV float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

KV_DEV float warp_min(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Sum over the whole (1-D) block; every thread must call it and every thread gets the result.
// scratch holds at least 33 floats and is reused, so callers separate two reductions with the
// barrier at the end of this function.
KV_DEV float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float s = lane < warps ? scratch[lane] : 0.0f;
        s = warp_sum(s);
        if (lane == 0) scratch[32] = s;
    }
    __syncthreads();
    float r = scratch[32];
    __syncthreads();
    return r;
}

KV_DEV float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float s = lane < warps ? scratch[lane] : -INFINITY;
        s = warp_max(s);
        if (lane == 0) scratch[32] = s;
    }
    __syncthreads();
    float r = scratch[32];
    __syncthreads();
    return r;
}

// Total order used by argmax and top-k: larger value first, then lower index. NaN never wins
// (it is skipped by the callers), so results are deterministic and match a CPU sort.
KV_DEV bool ranks_before(float v, int i, float bv, int bi) {
    return bi < 0 || v > bv || (v == bv && i < bi);
}
