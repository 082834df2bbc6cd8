// cuemu: just enough of the CUDA device environment to compile KVServe's kernels with g++ and run
// them on the CPU. Each thread block runs as blockDim cooperative fibers on one OS thread, switched
// at __syncthreads, __syncwarp and warp shuffles, so barrier and shuffle semantics are those of
// the GPU (a thread that has returned counts as arrived, as on the hardware) and every run is
// deterministic. It checks kernel logic, indexing and data layouts; it says nothing about speed,
// memory coalescing or the PTX the real build produces.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

using std::max;
using std::min;

struct dim3 {
    unsigned int x, y, z;
};

struct EmuThread {
    dim3 idx;
    int lane;
    int warp;
};

extern dim3 emu_block_dim;
extern dim3 emu_grid_dim;
extern dim3 emu_block_idx;
extern EmuThread* emu_current;

#define threadIdx (emu_current->idx)
#define blockIdx (emu_block_idx)
#define blockDim (emu_block_dim)
#define gridDim (emu_grid_dim)
#define warpSize 32

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// One block runs at a time, so a function-local static is exactly one block's shared memory.
#define __shared__ static

void __syncthreads();
void __syncwarp(unsigned int mask = 0xffffffffu);
// Publishes this lane's value and returns lane src's value, both after a warp barrier.
uint64_t emu_exchange(uint64_t mine, int src);

template <class T> inline T emu_shuffle(T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 64 bits");
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    const uint64_t got = emu_exchange(bits, src);
    T out;
    std::memcpy(&out, &got, sizeof(T));
    return out;
}

template <class T> inline T __shfl_xor_sync(unsigned int, T v, int laneMask, int width = 32) {
    const int lane = emu_current->lane;
    int src = lane ^ laneMask;
    if ((src / width) != (lane / width)) src = lane;
    return emu_shuffle(v, src);
}

template <class T> inline T __shfl_down_sync(unsigned int, T v, unsigned int delta, int width = 32) {
    const int lane = emu_current->lane;
    int src = lane + (int) delta;
    if ((src / width) != (lane / width)) src = lane;
    return emu_shuffle(v, src);
}

template <class T> inline T __shfl_sync(unsigned int, T v, int srcLane, int width = 32) {
    const int lane = emu_current->lane;
    return emu_shuffle(v, (lane / width) * width + (srcLane % width));
}

inline float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline int __float_as_int(float f) { int u; std::memcpy(&u, &f, 4); return u; }
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline float __expf(float x) { return expf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }

// IEEE binary16 <-> binary32, round to nearest even (what __float2half_rn and Java's
// Float.floatToFloat16 do).
inline float emu_half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t) (h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {   // subnormal: value = mant * 2^-24, exact in fp32
            const float f = (float) mant * 5.9604644775390625e-8f;
            return sign ? -f : f;
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    return __uint_as_float(bits);
}

inline uint16_t emu_float_to_half(float f) {
    const uint32_t x = __float_as_uint(f);
    const uint16_t sign = (uint16_t) ((x >> 16) & 0x8000);
    const uint32_t absx = x & 0x7FFFFFFFu;
    if (absx >= 0x7F800000u) return sign | (absx > 0x7F800000u ? 0x7E00 : 0x7C00);   // NaN, inf
    if (absx >= 0x477FF000u) return sign | 0x7C00;   // rounds to >= 65520: overflow to inf
    if (absx < 0x38800000u) {                        // below 2^-14: fp16 subnormal or zero
        // value / 2^-24, rounded to nearest even, is the subnormal mantissa
        const float scaled = __uint_as_float(absx) * 16777216.0f;
        return sign | (uint16_t) nearbyintf(scaled);
    }
    const uint32_t mant = absx & 0x7FFFFFu;
    uint32_t h = ((absx >> 23) - 112) << 10 | (mant >> 13);
    const uint32_t rest = mant & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;   // carry may move into the exponent: fine
    return sign | (uint16_t) h;
}

// Kernel-parameter unpacking: p[i] points at the value of parameter i, as for cuLaunchKernel.
template <class... A, std::size_t... I>
void emu_call(void (*f)(A...), void** p, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(p[I])...);
}

template <class... A> void emu_invoke(void (*f)(A...), void** p) {
    emu_call(f, p, std::index_sequence_for<A...>{});
}

struct EmuKernel {
    const char* name;
    void (*invoke)(void**);
};

extern "C" {
int emu_find(const char* name);
int emu_launch(int kernel, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by,
               unsigned int bz, unsigned int sharedBytes, void** params);
const char* emu_last_error();
}
