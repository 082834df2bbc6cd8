// Quantized mat-vec / mat-mat for the CPU backend, on integer dot-product instructions.
//
// Why C: the Vector API has no int8 dot product, so the Java kernels widen every weight to a float
// (16 multiply-adds per instruction, plus a convert or a permute per 16 weights). This file does what
// llama.cpp's CPU backend does for Q8_0 and Q4_0: the activations are quantized once per matmul to
// Q8_0-style blocks (32 int8 values, one fp16-rounded scale), and a weight block meets its activation
// block in one vpdpbusd (32 int8 products summed into 8 int32 lanes; AVX-512 VNNI on 256-bit
// registers) or vpmaddubsw + vpmaddwd (AVX2). The integer sums are exact; only the per-block scaling
// and the final sum are float. Row and thread scheduling stay in Java (CpuBackend): each call covers
// a chunk of rows.
//
// Layouts (ggml's, read in place from the model file):
//   Q8_0 block: fp16 d, int8 q[32]                value = d * q
//   Q4_0 block: fp16 d, uint8 qs[16]              value j = d * ((qs[j] & 15) - 8), j+16 = d * ((qs[j] >> 4) - 8)
// Quantized activations, per row of `cols` values (cols % 32 == 0):
//   xq[cols] int8, xd[cols/32] float (fp16-rounded, as ggml stores it),
//   xs[cols/4 + cols/32] int32: -8 times the sum of each run of four xq, then -8 times each block's
//   sum (Q4_0's weights are stored as q + 8; starting a block's integer sum at -8·Σx makes it
//   Σ (q - 8)·x without a subtraction per block)
//
// Built into a committed resource by ../../../build-cpu.sh; see native/README.md.
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))

enum { ISA_NONE = 0, ISA_AVX2 = 1, ISA_AVX512_VNNI = 2 };

/** int32 values of xs per activation row: cols/4 run sums, then cols/32 block sums. */
#define XS_STRIDE(cols) ((cols) / 4 + (cols) / 32)

static int detected_isa(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma")) return ISA_AVX512_VNNI;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) return ISA_AVX2;
    return ISA_NONE;
}

static int isa = -1;

/** The instruction set the kernels use: 0 none (do not call them), 1 AVX2, 2 AVX-512 VNNI. */
EXPORT int32_t kvs_cpu_isa(void) {
    if (isa < 0) isa = detected_isa();
    return isa;
}

/** Lowers the instruction set (tests run every path the machine has); returns the one now in use. */
EXPORT int32_t kvs_cpu_limit_isa(int32_t max) {
    int d = detected_isa();
    isa = max < d ? (max < 0 ? 0 : max) : d;
    return isa;
}

AVX2 static inline float half_to_float(const uint8_t* p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

AVX2 static inline float hsum8(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/**
 * Quantizes `rows` activation rows (row i at x + i*xStride) as ggml's quantize_row_q8_0 does on AVX:
 * d = max|x| / 127 stored as fp16, q = round-to-nearest-even(x * 127 / max|x|).
 */
EXPORT AVX2 void kvs_quantize_q8(const float* x, int64_t xStride, int32_t rows, int32_t cols,
                                 int8_t* xq, float* xd, int32_t* xs) {
    const __m256 signBit = _mm256_set1_ps(-0.0f);
    for (int32_t r = 0; r < rows; r++) {
        const float* in = x + r * xStride;
        int8_t* q = xq + (int64_t) r * cols;
        float* d = xd + (int64_t) r * (cols / 32);
        int32_t* s = xs + (int64_t) r * XS_STRIDE(cols);
        for (int32_t b = 0; b < cols / 32; b++) {
            __m256 v0 = _mm256_loadu_ps(in + 32 * b), v1 = _mm256_loadu_ps(in + 32 * b + 8);
            __m256 v2 = _mm256_loadu_ps(in + 32 * b + 16), v3 = _mm256_loadu_ps(in + 32 * b + 24);
            __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(signBit, v0), _mm256_andnot_ps(signBit, v1)),
                                     _mm256_max_ps(_mm256_andnot_ps(signBit, v2), _mm256_andnot_ps(signBit, v3)));
            __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            float amax = _mm_cvtss_f32(m4);
            d[b] = _cvtsh_ss(_cvtss_sh(amax / 127.0f, 0));
            __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
            __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            // Pack to int8 in order: packs work per 128-bit half, hence the final permute.
            __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
            __m256i p = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i*) (q + 32 * b), p);
            // -8 × each run of four: pairs summed by vpmaddubsw (times 1), pairs of pairs by vpmaddwd (times -8).
            __m256i runs = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), p), _mm256_set1_epi16(-8));
            _mm256_storeu_si256((__m256i*) (s + 8 * b), runs);
            __m128i t = _mm_add_epi32(_mm256_castsi256_si128(runs), _mm256_extracti128_si256(runs, 1));
            t = _mm_hadd_epi32(t, t);
            s[cols / 4 + b] = _mm_cvtsi128_si32(_mm_hadd_epi32(t, t));
        }
    }
}

// ---- Q4_0 ------------------------------------------------------------------------------------

/** The 32 weights of a Q4_0 block as unsigned bytes 0..15, in element order. */
AVX2 static inline __m256i q4_0_nibbles(const uint8_t* block) {
    __m128i q = _mm_loadu_si128((const __m128i*) (block + 2));
    return _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1),
                            _mm256_set1_epi8(15));
}

/** Σ (q - 8)·x over one block as 8 int32 lanes; s = the block's -8·Σx runs. */
VNNI static inline __m256i q4_0_dot_vnni(const uint8_t* block, const int8_t* x, const int32_t* s) {
    return _mm256_dpbusd_epi32(_mm256_loadu_si256((const __m256i*) s), q4_0_nibbles(block),
                               _mm256_loadu_si256((const __m256i*) x));
}

AVX2 static inline __m256i q4_0_dot_avx2(const uint8_t* block, const int8_t* x, const int32_t* s) {
    __m256i pairs = _mm256_maddubs_epi16(q4_0_nibbles(block), _mm256_loadu_si256((const __m256i*) x));
    return _mm256_add_epi32(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)), _mm256_loadu_si256((const __m256i*) s));
}

// ---- Q8_0 ------------------------------------------------------------------------------------

/** Σ q·x over one block as 8 int32 lanes: |q| (unsigned) times x with q's sign, the u8×s8 form both ISAs take. */
VNNI static inline __m256i q8_0_dot_vnni(const uint8_t* block, const int8_t* x, const int32_t* s) {
    (void) s;
    __m256i q = _mm256_loadu_si256((const __m256i*) (block + 2));
    __m256i v = _mm256_loadu_si256((const __m256i*) x);
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(q), _mm256_sign_epi8(v, q));
}

AVX2 static inline __m256i q8_0_dot_avx2(const uint8_t* block, const int8_t* x, const int32_t* s) {
    (void) s;
    __m256i q = _mm256_loadu_si256((const __m256i*) (block + 2));
    __m256i v = _mm256_loadu_si256((const __m256i*) x);
    // |q| ≤ 128 and |x| ≤ 127: a pair sums to at most 32512, so vpmaddubsw never saturates.
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(v, q)), _mm256_set1_epi16(1));
}

// ---- mat-vec / mat-mat -----------------------------------------------------------------------

static inline uint16_t load_u16(const uint8_t* p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

// One weight row against one activation row (decode). Eight blocks at a time: their eight fp16
// scales are converted in one instruction and multiplied by the activation scales in another, and
// each block picks its lane with one permute (instead of a scalar convert, multiply and broadcast
// per block: 12 % more weights/s from memory on Q4_0). The prefetch runs 1 KiB ahead, across the
// end of the row into the next one, which the same call usually reads next.
#define ROW_DOT(NAME, TARGET, BLOCK_BYTES, DOT)                                                              \
TARGET static inline float NAME(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xs,    \
                                int32_t nb) {                                                               \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;                                                               \
    int32_t k = 0;                                                                                          \
    for (; k + 8 <= nb; k += 8) {                                                                           \
        const uint8_t* o = row + (int64_t) BLOCK_BYTES * k;                                                 \
        _mm_prefetch((const char*) o + 1024, _MM_HINT_T0);                                                  \
        _mm_prefetch((const char*) o + 1024 + 64, _MM_HINT_T0);                                             \
        _mm_prefetch((const char*) o + 1024 + 128, _MM_HINT_T0);                                            \
        if (BLOCK_BYTES * 8 > 192) {                                                                        \
            _mm_prefetch((const char*) o + 1024 + 192, _MM_HINT_T0);                                        \
            _mm_prefetch((const char*) o + 1024 + 256, _MM_HINT_T0);                                        \
        }                                                                                                   \
        __m128i h = _mm_cvtsi32_si128(load_u16(o));                                                         \
        h = _mm_insert_epi16(h, load_u16(o + BLOCK_BYTES), 1);                                              \
        h = _mm_insert_epi16(h, load_u16(o + 2 * BLOCK_BYTES), 2);                                          \
        h = _mm_insert_epi16(h, load_u16(o + 3 * BLOCK_BYTES), 3);                                          \
        h = _mm_insert_epi16(h, load_u16(o + 4 * BLOCK_BYTES), 4);                                          \
        h = _mm_insert_epi16(h, load_u16(o + 5 * BLOCK_BYTES), 5);                                          \
        h = _mm_insert_epi16(h, load_u16(o + 6 * BLOCK_BYTES), 6);                                          \
        h = _mm_insert_epi16(h, load_u16(o + 7 * BLOCK_BYTES), 7);                                          \
        __m256 scales = _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(xd + k));                         \
        _Pragma("GCC unroll 4") for (int j = 0; j < 8; j += 2) {                                            \
            a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(o + BLOCK_BYTES * j, xq + 32 * (k + j), xs + 8 * (k + j))), \
                                 _mm256_permutevar8x32_ps(scales, _mm256_set1_epi32(j)), a0);               \
            a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(o + BLOCK_BYTES * (j + 1), xq + 32 * (k + j + 1),   \
                                                        xs + 8 * (k + j + 1))),                             \
                                 _mm256_permutevar8x32_ps(scales, _mm256_set1_epi32(j + 1)), a1);           \
        }                                                                                                   \
    }                                                                                                       \
    for (; k < nb; k++) {                                                                                   \
        const uint8_t* o = row + (int64_t) BLOCK_BYTES * k;                                                 \
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(o, xq + 32 * k, xs + 8 * k)),                           \
                             _mm256_set1_ps(half_to_float(o) * xd[k]), a0);                                 \
    }                                                                                                       \
    return hsum8(_mm256_add_ps(a0, a1));                                                                    \
}

ROW_DOT(q4_0_row_vnni, VNNI, 18, q4_0_dot_vnni)
ROW_DOT(q4_0_row_avx2, AVX2, 18, q4_0_dot_avx2)
ROW_DOT(q8_0_row_vnni, VNNI, 34, q8_0_dot_vnni)
ROW_DOT(q8_0_row_avx2, AVX2, 34, q8_0_dot_avx2)
//
// out[b * outStride + r] = Σ_c w[r][c] · x_b[c] for rows r < rows and activation rows b < batch.
// One weight row at a time, against up to four activation rows: the row's blocks are decoded once
// per four activation rows and its bytes stay in L1 meanwhile.

#define MATMUL(NAME, TARGET, BLOCK_BYTES, DOT, ROW_DOT)                                                       \
TARGET static void NAME(const uint8_t* w, int64_t rowBytes, int32_t rows, const int8_t* xq, const float* xd,  \
                        const int32_t* xs, int32_t cols, int32_t batch, float* out, int64_t outStride) {      \
    const int32_t nb = cols / 32;                                                                           \
    for (int32_t r = 0; r < rows; r++) {                                                                    \
        const uint8_t* row = w + rowBytes * r;                                                              \
        int32_t b = 0;                                                                                      \
        if (batch == 1) {                                                                                   \
            out[r] = ROW_DOT(row, xq, xd, xs, nb);                                                          \
            continue;                                                                                       \
        }                                                                                                   \
        for (; b + 4 <= batch; b += 4) {                                                                    \
            const int8_t* q0 = xq + (int64_t) b * cols;                                                     \
            const float* d0 = xd + (int64_t) b * nb;                                                        \
            const int32_t* s0 = xs + (int64_t) b * XS_STRIDE(cols);                                         \
            const int64_t ss = XS_STRIDE(cols);                                                             \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                     \
            for (int32_t k = 0; k < nb; k++) {                                                              \
                const uint8_t* o = row + (int64_t) BLOCK_BYTES * k;                                         \
                float dw = half_to_float(o);                                                                \
                a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(o, q0 + 32 * k, s0 + 8 * k)),                   \
                                     _mm256_set1_ps(dw * d0[k]), a0);                                       \
                a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(o, q0 + cols + 32 * k, s0 + ss + 8 * k)), \
                                     _mm256_set1_ps(dw * d0[nb + k]), a1);                                  \
                a2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(o, q0 + 2 * cols + 32 * k, s0 + 2 * ss + 8 * k)), \
                                     _mm256_set1_ps(dw * d0[2 * nb + k]), a2);                              \
                a3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(o, q0 + 3 * cols + 32 * k, s0 + 3 * ss + 8 * k)), \
                                     _mm256_set1_ps(dw * d0[3 * nb + k]), a3);                              \
            }                                                                                               \
            out[b * outStride + r] = hsum8(a0);                                                             \
            out[(b + 1) * outStride + r] = hsum8(a1);                                                       \
            out[(b + 2) * outStride + r] = hsum8(a2);                                                       \
            out[(b + 3) * outStride + r] = hsum8(a3);                                                       \
        }                                                                                                   \
        for (; b < batch; b++) {                                                                            \
            const int8_t* q0 = xq + (int64_t) b * cols;                                                     \
            const float* d0 = xd + (int64_t) b * nb;                                                        \
            const int32_t* s0 = xs + (int64_t) b * XS_STRIDE(cols);                                         \
            __m256 a0 = _mm256_setzero_ps();                                                                \
            for (int32_t k = 0; k < nb; k++) {                                                              \
                const uint8_t* o = row + (int64_t) BLOCK_BYTES * k;                                         \
                a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(o, q0 + 32 * k, s0 + 8 * k)),                   \
                                     _mm256_set1_ps(half_to_float(o) * d0[k]), a0);                         \
            }                                                                                               \
            out[b * outStride + r] = hsum8(a0);                                                             \
        }                                                                                                   \
    }                                                                                                       \
}

MATMUL(q4_0_vnni, VNNI, 18, q4_0_dot_vnni, q4_0_row_vnni)
MATMUL(q4_0_avx2, AVX2, 18, q4_0_dot_avx2, q4_0_row_avx2)
MATMUL(q8_0_vnni, VNNI, 34, q8_0_dot_vnni, q8_0_row_vnni)
MATMUL(q8_0_avx2, AVX2, 34, q8_0_dot_avx2, q8_0_row_avx2)

/** Q4_0 weights (`rows` rows, `rowBytes` apart) times quantized activations; see MATMUL above. */
EXPORT void kvs_matmul_q4_0(const uint8_t* w, int64_t rowBytes, int32_t rows, const int8_t* xq, const float* xd,
                            const int32_t* xs, int32_t cols, int32_t batch, float* out, int64_t outStride) {
    if (kvs_cpu_isa() == ISA_AVX512_VNNI) q4_0_vnni(w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride);
    else q4_0_avx2(w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride);
}

/** Q8_0 weights times quantized activations (xs is not read). */
EXPORT void kvs_matmul_q8_0(const uint8_t* w, int64_t rowBytes, int32_t rows, const int8_t* xq, const float* xd,
                            const int32_t* xs, int32_t cols, int32_t batch, float* out, int64_t outStride) {
    if (kvs_cpu_isa() == ISA_AVX512_VNNI) q8_0_vnni(w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride);
    else q8_0_avx2(w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride);
}

// ---- Q8_0 and Q4_0 repacked by eight rows -------------------------------------------------------
//
// What llama.cpp's CPU "REPACK" does, in layouts of our own: eight rows' blocks k side by side, so
// that one 256-bit register holds four quant bytes of each of the eight rows and the lanes of every
// sum are the rows. A block's integer dot is then eight vpdpbusd against broadcast activations (no
// shuffles, no per-row horizontal sum), the eight scales are one load and one convert, and the eight
// results are one store. A block of eight rows takes as many bytes as in ggml's layout:
//   d[8]           fp16, row i's scale
//   q[chunks][8][4] q[c][i] = row i's quant bytes 4c..4c+3 (Q8_0: 8 chunks; Q4_0: 4 chunks, whose
//                  low nibbles are elements 4c..4c+3 and high nibbles 16+4c..16+4c+3)
// Groups follow each other, each holding its blocks in order: group g, block k at (g·nb + k)·8·B,
// B = 34 (Q8_0) or 18 (Q4_0). Decoded, a block is eight chunk vectors, chunk c meeting activation
// bytes 4c..4c+3 (for Q4_0: the four low-nibble chunks, then the four high-nibble ones).

static inline void copy_bytes(uint8_t* dst, const uint8_t* src, int n) {
    for (int i = 0; i < n; i++) dst[i] = src[i];
}

static void repack_x8(const uint8_t* src, int64_t rowBytes, int32_t groups, int32_t cols, uint8_t* dst, int blockBytes) {
    const int32_t nb = cols / 32;
    const int chunks = (blockBytes - 2) / 4;
    for (int32_t g = 0; g < groups; g++) {
        for (int32_t k = 0; k < nb; k++) {
            uint8_t* o = dst + ((int64_t) g * nb + k) * 8 * blockBytes;
            for (int i = 0; i < 8; i++) {
                const uint8_t* b = src + (int64_t) (8 * g + i) * rowBytes + (int64_t) blockBytes * k;
                copy_bytes(o + 2 * i, b, 2);
                for (int c = 0; c < chunks; c++) copy_bytes(o + 16 + 32 * c + 4 * i, b + 2 + 4 * c, 4);
            }
        }
    }
}

/** Repacks rows 0 .. 8·groups of a Q4_0 matrix (rows `rowBytes` apart) into `dst` (groups·nb·144 bytes). */
EXPORT void kvs_repack_q4_0x8(const uint8_t* src, int64_t rowBytes, int32_t groups, int32_t cols, uint8_t* dst) {
    repack_x8(src, rowBytes, groups, cols, dst, 18);
}

/** Repacks rows 0 .. 8·groups of a Q8_0 matrix into `dst` (groups·nb·272 bytes). */
EXPORT void kvs_repack_q8_0x8(const uint8_t* src, int64_t rowBytes, int32_t groups, int32_t cols, uint8_t* dst) {
    repack_x8(src, rowBytes, groups, cols, dst, 34);
}

static inline int32_t load_i32(const int8_t* p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

// Per type and instruction set: DECODE fills the eight chunk vectors of a block, INIT starts a
// block's integer sum from xs's block sum (-8·Σx), DOT adds chunk × broadcast activations.
// Q4_0: nibbles 0..15 stored as q + 8, so the sum starts at -8·Σx. Q8_0 on VNNI: vpdpbusd takes
// unsigned × signed bytes, so the weights' sign bit is flipped (q + 128) and the sum starts at
// -128·Σx; on AVX2, whose vpmaddubsw would saturate on q + 128, |q| meets x carrying q's sign.

AVX2 static inline void q4_0x8_decode(const uint8_t* o, __m256i w[8]) {
    const __m256i m4 = _mm256_set1_epi8(15);
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
        __m256i q = _mm256_loadu_si256((const __m256i*) (o + 16 + 32 * c));
        w[c] = _mm256_and_si256(q, m4);
        w[c + 4] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
    }
}

AVX2 static inline __m256i q4_0x8_init(int32_t blockSum) { return _mm256_set1_epi32(blockSum); }
VNNI static inline __m256i q4_0x8_dot_vnni(__m256i acc, __m256i u, __m256i x) { return _mm256_dpbusd_epi32(acc, u, x); }
AVX2 static inline __m256i q4_0x8_dot_avx2(__m256i acc, __m256i u, __m256i x) {
    // u ≤ 15: a pair sums to at most 3810, so vpmaddubsw never saturates.
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1)));
}

VNNI static inline void q8_0x8_decode_vnni(const uint8_t* o, __m256i w[8]) {
    _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) {
        w[c] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*) (o + 16 + 32 * c)), _mm256_set1_epi8((char) 0x80));
    }
}
VNNI static inline __m256i q8_0x8_init_vnni(int32_t blockSum) { return _mm256_set1_epi32(16 * blockSum); }
VNNI static inline __m256i q8_0x8_dot_vnni(__m256i acc, __m256i w, __m256i x) { return _mm256_dpbusd_epi32(acc, w, x); }

AVX2 static inline void q8_0x8_decode_avx2(const uint8_t* o, __m256i w[8]) {
    _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) w[c] = _mm256_loadu_si256((const __m256i*) (o + 16 + 32 * c));
}
AVX2 static inline __m256i q8_0x8_init_avx2(int32_t blockSum) { (void) blockSum; return _mm256_setzero_si256(); }
AVX2 static inline __m256i q8_0x8_dot_avx2(__m256i acc, __m256i w, __m256i x) {
    __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

// out[b·outStride + 8g + i] for row 8g+i of group g < groups, activation row b < batch. Batches decode
// each block once for four activation rows; batch 1 streams the weights with two sums in flight.
// MIN (Q4_1, Q5_1): the eight rows' fp16 m at byte 16 of a packed block add m·dx·Σx; 0 folds it away.
// The unroll pragmas matter: GCC -O2 left these loops rolled, the chunk vectors on the stack, and
// the batch loop at 40 % of the speed.
#define MATMUL_X8(NAME, TARGET, BLOCK_BYTES, DECODE, INIT, MIN, DOT)                                        \
TARGET static void NAME(const uint8_t* p, int32_t groups, const int8_t* xq, const float* xd,               \
                        const int32_t* xs, int32_t cols, int32_t batch, float* out, int64_t outStride) {   \
    const int32_t nb = cols / 32;                                                                           \
    const int64_t ss = XS_STRIDE(cols);                                                                     \
    const int64_t gb = 8 * BLOCK_BYTES;                                                                     \
    for (int32_t g = 0; g < groups; g++) {                                                                  \
        const uint8_t* base = p + (int64_t) g * nb * gb;                                                    \
        int32_t b = 0;                                                                                      \
        for (; b + 4 <= batch; b += 4) {                                                                    \
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}; \
            for (int32_t k = 0; k < nb; k++) {                                                              \
                const uint8_t* o = base + k * gb;                                                           \
                __m256i w[8];                                                                               \
                DECODE(o, w);                                                                               \
                __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*) o));                           \
                __m256 mw = MIN ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*) (o + 16))) : dw;         \
                _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {                                       \
                    const int8_t* x = xq + (int64_t) (b + j) * cols + 32 * k;                               \
                    int32_t tot = xs[(b + j) * ss + cols / 4 + k];                                          \
                    float dx = xd[(int64_t) (b + j) * nb + k];                                              \
                    __m256i s = INIT(tot);                                                                  \
                    _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) {                                   \
                        s = DOT(s, w[c], _mm256_set1_epi32(load_i32(x + 4 * c)));                           \
                    }                                                                                       \
                    acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(dx)), acc[j]); \
                    if (MIN) acc[j] = _mm256_fmadd_ps(mw, _mm256_set1_ps(dx * (float) (-(tot / 8))), acc[j]); \
                }                                                                                           \
            }                                                                                               \
            for (int j = 0; j < 4; j++) _mm256_storeu_ps(out + (b + j) * outStride + 8 * g, acc[j]);        \
        }                                                                                                   \
        for (; b < batch; b++) {                                                                            \
            const int8_t* x = xq + (int64_t) b * cols;                                                      \
            const int32_t* tot = xs + b * ss + cols / 4;                                                    \
            const float* d = xd + (int64_t) b * nb;                                                         \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0;                                                       \
            for (int32_t k = 0; k < nb; k++) {                                                              \
                const uint8_t* o = base + k * gb;                                                           \
                _Pragma("GCC unroll 8") for (int l = 0; l < gb; l += 64) {                                  \
                    _mm_prefetch((const char*) o + 1024 + l, _MM_HINT_T0);                                  \
                }                                                                                           \
                __m256i w[8];                                                                               \
                DECODE(o, w);                                                                               \
                __m256i s0 = INIT(tot[k]), s1 = _mm256_setzero_si256();                                     \
                _Pragma("GCC unroll 4") for (int c = 0; c < 8; c += 2) {                                    \
                    s0 = DOT(s0, w[c], _mm256_set1_epi32(load_i32(x + 32 * k + 4 * c)));                    \
                    s1 = DOT(s1, w[c + 1], _mm256_set1_epi32(load_i32(x + 32 * k + 4 * c + 4)));            \
                }                                                                                           \
                __m256 sc = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*) o)), _mm256_set1_ps(d[k])); \
                if (k & 1) a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), sc, a1);      \
                else a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), sc, a0);            \
                if (MIN) {                                                                                  \
                    __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*) (o + 16)));                \
                    __m256 mx = _mm256_set1_ps(d[k] * (float) (-(tot[k] / 8)));                             \
                    if (k & 1) a0 = _mm256_fmadd_ps(mw, mx, a0);                                            \
                    else a1 = _mm256_fmadd_ps(mw, mx, a1);                                                  \
                }                                                                                           \
            }                                                                                               \
            _mm256_storeu_ps(out + b * outStride + 8 * g, _mm256_add_ps(a0, a1));                           \
        }                                                                                                   \
    }                                                                                                       \
}

MATMUL_X8(q4_0x8_vnni, VNNI, 18, q4_0x8_decode, q4_0x8_init, 0, q4_0x8_dot_vnni)
MATMUL_X8(q4_0x8_avx2, AVX2, 18, q4_0x8_decode, q4_0x8_init, 0, q4_0x8_dot_avx2)
MATMUL_X8(q8_0x8_vnni, VNNI, 34, q8_0x8_decode_vnni, q8_0x8_init_vnni, 0, q8_0x8_dot_vnni)
MATMUL_X8(q8_0x8_avx2, AVX2, 34, q8_0x8_decode_avx2, q8_0x8_init_avx2, 0, q8_0x8_dot_avx2)

/** Repacked Q4_0 (kvs_repack_q4_0x8) times quantized activations: 8·groups rows. */
EXPORT void kvs_matmul_q4_0x8(const uint8_t* packed, int32_t groups, const int8_t* xq, const float* xd,
                              const int32_t* xs, int32_t cols, int32_t batch, float* out, int64_t outStride) {
    if (kvs_cpu_isa() == ISA_AVX512_VNNI) q4_0x8_vnni(packed, groups, xq, xd, xs, cols, batch, out, outStride);
    else q4_0x8_avx2(packed, groups, xq, xd, xs, cols, batch, out, outStride);
}

/** Repacked Q8_0 (kvs_repack_q8_0x8) times quantized activations: 8·groups rows. */
EXPORT void kvs_matmul_q8_0x8(const uint8_t* packed, int32_t groups, const int8_t* xq, const float* xd,
                              const int32_t* xs, int32_t cols, int32_t batch, float* out, int64_t outStride) {
    if (kvs_cpu_isa() == ISA_AVX512_VNNI) q8_0x8_vnni(packed, groups, xq, xd, xs, cols, batch, out, outStride);
    else q8_0x8_avx2(packed, groups, xq, xd, xs, cols, batch, out, outStride);
}

// ---- Q4_1, Q5_0, Q5_1: the block-32 types of the K presets' fallbacks ------------------------------
//
// Layouts (ggml's), q the unsigned quant:
//   Q4_1 block: fp16 d, fp16 m, uint8 qs[16]             value j = d * q_j + m, q_j as Q4_0's nibbles
//   Q5_0 block: fp16 d, uint32 qh, uint8 qs[16]          value j = d * (q_j - 16), q_j = nibble | (bit j of qh) << 4
//   Q5_1 block: fp16 d, fp16 m, uint32 qh, uint8 qs[16]  value j = d * q_j + m
// The quants (0..31) meet the activations in the u8 × s8 instructions as they are: on AVX2 a pair sums
// to at most 2·31·127, so vpmaddubsw never saturates. Against the same Q8_0-style activation blocks
// as Q4_0 (kvs_quantize_q8):
//   Q5_0 starts a block's integer sum at -16·Σx (twice xs's block sum), as Q4_0 starts at -8·Σx;
//   Q4_1 and Q5_1 add m·dx·Σx per block in float, Σx = -(xs's block sum)/8, exact. ggml pairs these two
//   with q8_1 activations, whose stored s = dx·Σx is rounded to fp16; here it is not (the results
//   differ from ggml's by that rounding, far below the activation quantization's own error).
// Types are named by their ggml ids. Both the plain kernels (ggml's layout, read in place) and the
// kernels on weights repacked by eight rows are here, as for Q4_0.

enum { TYPE_Q4_1 = 3, TYPE_Q5_0 = 6, TYPE_Q5_1 = 7 };

static int b32_block_bytes(int type) {
    return type == TYPE_Q4_1 ? 20 : type == TYPE_Q5_0 ? 22 : type == TYPE_Q5_1 ? 24 : 0;
}

/** 32 nibbles of qs[16] as bytes 0..15 in element order: low nibbles are elements 0..15, high 16..31. */
AVX2 static inline __m256i nibbles_32(const uint8_t* qs) {
    __m128i q = _mm_loadu_si128((const __m128i*) qs);
    return _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1),
                            _mm256_set1_epi8(15));
}

/** 0x10 in byte j where bit j of the little-endian 32-bit qh is set. */
AVX2 static inline __m256i fifth_bits_32(const uint8_t* qh) {
    int32_t h;
    memcpy(&h, qh, 4);
    // byte j takes byte j/8 of qh (vpshufb works per 128-bit half; both halves hold qh), then bit j % 8 of it
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(h), _mm256_setr_epi64x(0, 0x0101010101010101LL,
                                                                             0x0202020202020202LL, 0x0303030303030303LL));
    const __m256i bit = _mm256_set1_epi64x((long long) 0x8040201008040201ULL);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit), _mm256_set1_epi8(0x10));
}

AVX2 static inline __m256i q4_1_quants(const uint8_t* o) { return nibbles_32(o + 4); }
AVX2 static inline __m256i q5_0_quants(const uint8_t* o) { return _mm256_or_si256(nibbles_32(o + 6), fifth_bits_32(o + 2)); }
AVX2 static inline __m256i q5_1_quants(const uint8_t* o) { return _mm256_or_si256(nibbles_32(o + 8), fifth_bits_32(o + 4)); }

// Plain kernels: for weights not uploaded and the rows beyond an uploaded weight's last group of
// eight, so written for clarity: one weight block against one activation block at a time.
// OFFSET: the integer sum starts at OFFSET·(block sum of xs) (spread over 8 lanes: the block sum is
// -8·Σx); MIN: the block's fp16 m at byte 2 adds m·dx·Σx.
#define MATMUL_B32(NAME, TARGET, BLOCK_BYTES, QUANTS, OFFSET, MIN, DOT)                                     \
TARGET static void NAME(const uint8_t* w, int64_t rowBytes, int32_t rows, const int8_t* xq, const float* xd,  \
                        const int32_t* xs, int32_t cols, int32_t batch, float* out, int64_t outStride) {      \
    const int32_t nb = cols / 32;                                                                           \
    const int64_t ss = XS_STRIDE(cols);                                                                     \
    for (int32_t r = 0; r < rows; r++) {                                                                    \
        const uint8_t* row = w + rowBytes * r;                                                              \
        for (int32_t b = 0; b < batch; b++) {                                                               \
            const int8_t* x = xq + (int64_t) b * cols;                                                      \
            const float* d = xd + (int64_t) b * nb;                                                         \
            const int32_t* tot = xs + b * ss + cols / 4;                                                    \
            __m256 acc = _mm256_setzero_ps();                                                               \
            float mins = 0;                                                                                 \
            for (int32_t k = 0; k < nb; k++) {                                                              \
                const uint8_t* o = row + (int64_t) BLOCK_BYTES * k;                                         \
                __m256i s = DOT(_mm256_set1_epi32(OFFSET * (tot[k] / 8)), QUANTS(o),                        \
                                _mm256_loadu_si256((const __m256i*) (x + 32 * k)));                         \
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(half_to_float(o) * d[k]), acc); \
                if (MIN) mins += half_to_float(o + 2) * d[k] * (float) (-(tot[k] / 8));                     \
            }                                                                                               \
            out[b * outStride + r] = hsum8(acc) + mins;                                                     \
        }                                                                                                   \
    }                                                                                                       \
}

MATMUL_B32(q4_1_vnni, VNNI, 20, q4_1_quants, 0, 1, q4_0x8_dot_vnni)
MATMUL_B32(q4_1_avx2, AVX2, 20, q4_1_quants, 0, 1, q4_0x8_dot_avx2)
MATMUL_B32(q5_0_vnni, VNNI, 22, q5_0_quants, 2, 0, q4_0x8_dot_vnni)
MATMUL_B32(q5_0_avx2, AVX2, 22, q5_0_quants, 2, 0, q4_0x8_dot_avx2)
MATMUL_B32(q5_1_vnni, VNNI, 24, q5_1_quants, 0, 1, q4_0x8_dot_vnni)
MATMUL_B32(q5_1_avx2, AVX2, 24, q5_1_quants, 0, 1, q4_0x8_dot_avx2)

/**
 * Q4_1, Q5_0 or Q5_1 weights (ggml type id `type`; `rows` rows, `rowBytes` apart) times quantized
 * activations, out[b·outStride + r]; any other type computes nothing (the Java side checks).
 */
EXPORT void kvs_matmul_b32(int32_t type, const uint8_t* w, int64_t rowBytes, int32_t rows, const int8_t* xq,
                           const float* xd, const int32_t* xs, int32_t cols, int32_t batch, float* out,
                           int64_t outStride) {
    int vnni = kvs_cpu_isa() == ISA_AVX512_VNNI;
    switch (type) {
        case TYPE_Q4_1: (vnni ? q4_1_vnni : q4_1_avx2)(w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride); break;
        case TYPE_Q5_0: (vnni ? q5_0_vnni : q5_0_avx2)(w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride); break;
        case TYPE_Q5_1: (vnni ? q5_1_vnni : q5_1_avx2)(w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride); break;
        default: break;
    }
}

// Repacked by eight rows, as Q4_0 (same bytes as ggml's layout), lanes = rows:
//   d[8]            fp16
//   m[8]            fp16 (Q4_1, Q5_1)
//   qh[8]           uint32 (Q5_0, Q5_1), row i's fifth bits rearranged: element 4c + t's bit at bit 8t + c,
//                   so that chunk c's four fifth bits sit at bit c of each byte of the lane: one shift
//                   and one and put them at 0x10 (ggml's order would need a shuffle and a compare)
//   q[4][8][4]      as Q4_0: chunk c, row i = qs[4c..4c+3] (low nibbles elements 4c.., high 16+4c..)
// Chunk c' = 0..7 of a decoded block holds elements 4c'..4c'+3 of each row (c' ≥ 4: the high nibbles).

static void repack_b32_x8(int type, const uint8_t* src, int64_t rowBytes, int32_t groups, int32_t cols, uint8_t* dst) {
    const int32_t nb = cols / 32;
    const int blockBytes = b32_block_bytes(type);
    const int hasMin = type != TYPE_Q5_0, hasQh = type != TYPE_Q4_1;
    const int qhAt = 2 + 2 * hasMin, qsAt = qhAt + 4 * hasQh;                 // in a ggml block
    const int packedQh = 16 + 16 * hasMin, packedQs = packedQh + 32 * hasQh;   // in a packed block
    for (int32_t g = 0; g < groups; g++) {
        for (int32_t k = 0; k < nb; k++) {
            uint8_t* o = dst + ((int64_t) g * nb + k) * 8 * blockBytes;
            for (int i = 0; i < 8; i++) {
                const uint8_t* b = src + (int64_t) (8 * g + i) * rowBytes + (int64_t) blockBytes * k;
                copy_bytes(o + 2 * i, b, 2);
                if (hasMin) copy_bytes(o + 16 + 2 * i, b + 2, 2);
                if (hasQh) {
                    uint32_t qh = (uint32_t) b[qhAt] | (uint32_t) b[qhAt + 1] << 8 | (uint32_t) b[qhAt + 2] << 16
                            | (uint32_t) b[qhAt + 3] << 24;
                    uint32_t re = 0;
                    for (int e = 0; e < 32; e++) re |= (qh >> e & 1u) << (8 * (e % 4) + e / 4);
                    for (int t = 0; t < 4; t++) o[packedQh + 4 * i + t] = (uint8_t) (re >> (8 * t));
                }
                for (int c = 0; c < 4; c++) copy_bytes(o + packedQs + 32 * c + 4 * i, b + qsAt + 4 * c, 4);
            }
        }
    }
}

/** Repacks rows 0 .. 8·groups of a Q4_1, Q5_0 or Q5_1 matrix into `dst` (groups·nb·8·block bytes). */
EXPORT void kvs_repack_b32x8(int32_t type, const uint8_t* src, int64_t rowBytes, int32_t groups, int32_t cols,
                             uint8_t* dst) {
    if (b32_block_bytes(type) > 0) repack_b32_x8(type, src, rowBytes, groups, cols, dst);
}

AVX2 static inline void nibbles_x8(const uint8_t* q, __m256i w[8]) {
    const __m256i m4 = _mm256_set1_epi8(15);
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i*) (q + 32 * c));
        w[c] = _mm256_and_si256(v, m4);
        w[c + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
}

/** ORs the rearranged fifth bits (see above) into the eight chunk vectors as 0x10. */
AVX2 static inline void fifth_bits_x8(const uint8_t* qh, __m256i w[8]) {
    const __m256i m = _mm256_set1_epi8(0x10);
    __m256i h = _mm256_loadu_si256((const __m256i*) qh);
    w[0] = _mm256_or_si256(w[0], _mm256_and_si256(_mm256_slli_epi32(h, 4), m));
    w[1] = _mm256_or_si256(w[1], _mm256_and_si256(_mm256_slli_epi32(h, 3), m));
    w[2] = _mm256_or_si256(w[2], _mm256_and_si256(_mm256_slli_epi32(h, 2), m));
    w[3] = _mm256_or_si256(w[3], _mm256_and_si256(_mm256_slli_epi32(h, 1), m));
    w[4] = _mm256_or_si256(w[4], _mm256_and_si256(h, m));
    w[5] = _mm256_or_si256(w[5], _mm256_and_si256(_mm256_srli_epi32(h, 1), m));
    w[6] = _mm256_or_si256(w[6], _mm256_and_si256(_mm256_srli_epi32(h, 2), m));
    w[7] = _mm256_or_si256(w[7], _mm256_and_si256(_mm256_srli_epi32(h, 3), m));
}

AVX2 static inline void q4_1x8_decode(const uint8_t* o, __m256i w[8]) { nibbles_x8(o + 32, w); }
AVX2 static inline void q5_0x8_decode(const uint8_t* o, __m256i w[8]) { nibbles_x8(o + 48, w); fifth_bits_x8(o + 16, w); }
AVX2 static inline void q5_1x8_decode(const uint8_t* o, __m256i w[8]) { nibbles_x8(o + 64, w); fifth_bits_x8(o + 32, w); }
AVX2 static inline __m256i q5_0x8_init(int32_t blockSum) { return _mm256_set1_epi32(2 * blockSum); }
AVX2 static inline __m256i zero_init(int32_t blockSum) { (void) blockSum; return _mm256_setzero_si256(); }

MATMUL_X8(q4_1x8_vnni, VNNI, 20, q4_1x8_decode, zero_init, 1, q4_0x8_dot_vnni)
MATMUL_X8(q4_1x8_avx2, AVX2, 20, q4_1x8_decode, zero_init, 1, q4_0x8_dot_avx2)
MATMUL_X8(q5_0x8_vnni, VNNI, 22, q5_0x8_decode, q5_0x8_init, 0, q4_0x8_dot_vnni)
MATMUL_X8(q5_0x8_avx2, AVX2, 22, q5_0x8_decode, q5_0x8_init, 0, q4_0x8_dot_avx2)
MATMUL_X8(q5_1x8_vnni, VNNI, 24, q5_1x8_decode, zero_init, 1, q4_0x8_dot_vnni)
MATMUL_X8(q5_1x8_avx2, AVX2, 24, q5_1x8_decode, zero_init, 1, q4_0x8_dot_avx2)

/** Repacked Q4_1, Q5_0 or Q5_1 (kvs_repack_b32x8) times quantized activations: 8·groups rows. */
EXPORT void kvs_matmul_b32x8(int32_t type, const uint8_t* packed, int32_t groups, const int8_t* xq, const float* xd,
                             const int32_t* xs, int32_t cols, int32_t batch, float* out, int64_t outStride) {
    int vnni = kvs_cpu_isa() == ISA_AVX512_VNNI;
    switch (type) {
        case TYPE_Q4_1: (vnni ? q4_1x8_vnni : q4_1x8_avx2)(packed, groups, xq, xd, xs, cols, batch, out, outStride); break;
        case TYPE_Q5_0: (vnni ? q5_0x8_vnni : q5_0x8_avx2)(packed, groups, xq, xd, xs, cols, batch, out, outStride); break;
        case TYPE_Q5_1: (vnni ? q5_1x8_vnni : q5_1x8_avx2)(packed, groups, xq, xd, xs, cols, batch, out, outStride); break;
        default: break;
    }
}

// ---- K-quants against q8_K activations -------------------------------------------------------
//
// Q4_K's and Q6_K's scales cover 32 and 16 values and their blocks 256, so their weights meet
// activations quantized per 256 values, as ggml's vec_dot_q4_K_q8_K / vec_dot_q6_K_q8_K do:
//   xq[cols] int8, xd[cols/256] float, xs[cols/16] int32 (the sum of each run of sixteen xq)
// per row of `cols` values (cols % 256 == 0), quantized as ggml's quantize_row_q8_K_ref: max = the
// first value of largest magnitude, iscale = -127/max, q = min(127, round-half-even(iscale·x)),
// d = 1/iscale kept as a float (no fp16 rounding); a block of zeros has d = 0 and q = 0.
//
// Q4_K block (144 bytes): fp16 d, fp16 dmin, uint8 scales[12] (eight 6-bit scales sc and mins m,
// ggml's get_scale_min_k4 packing), uint8 qs[128]: sub-block 2i is the low nibbles of qs[32i..32i+31],
// 2i+1 their high nibbles; value = d·sc·q − dmin·m. A block against its activation block is then
//   d·dx·Σ_j sc_j·Σ q·x̂  −  dmin·dx·Σ_j m_j·Σ x̂
// with both integer sums exact (the second from the run sums). Only AVX2 code (vpmaddubsw, then
// vpmaddwd by the sub-block's scale); AVX-512 VNNI machines run it too.

EXPORT AVX2 void kvs_quantize_q8_k(const float* x, int64_t xStride, int32_t rows, int32_t cols,
                                   int8_t* xq, float* xd, int32_t* xs) {
    const int32_t nb = cols / 256;
    for (int32_t r = 0; r < rows; r++) {
        const float* in = x + r * xStride;
        int8_t* q = xq + (int64_t) r * cols;
        float* d = xd + (int64_t) r * nb;
        int32_t* s = xs + (int64_t) r * (cols / 16);
        for (int32_t b = 0; b < nb; b++) {
            const float* v = in + 256 * b;
            float max = 0.0f, amax = 0.0f;
            for (int j = 0; j < 256; j++) {
                float ax = __builtin_fabsf(v[j]);
                if (ax > amax) {
                    amax = ax;
                    max = v[j];
                }
            }
            float iscale = amax != 0.0f ? -127.0f / max : 0.0f;
            d[b] = amax != 0.0f ? 1.0f / iscale : 0.0f;
            for (int j = 0; j < 256; j++) {
                int32_t n = _mm_cvtss_si32(_mm_set_ss(iscale * v[j]));   // round half even (MXCSR default)
                q[256 * b + j] = (int8_t) (n < 127 ? n : 127);
            }
            for (int j = 0; j < 16; j++) {
                int32_t sum = 0;
                for (int i = 0; i < 16; i++) sum += q[256 * b + 16 * j + i];
                s[16 * b + j] = sum;
            }
        }
    }
}

enum { TYPE_Q4_K = 12, TYPE_Q6_K = 14 };

/** One Q4_K row against one q8_K activation row: nb blocks of 256. */
AVX2 static float q4_k_row_avx2(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xs, int32_t nb) {
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256 acc = _mm256_setzero_ps(), accMin = acc;
    for (int32_t k = 0; k < nb; k++) {
        const uint8_t* blk = row + 144 * (int64_t) k;
        _mm_prefetch((const char*) blk + 576, _MM_HINT_T0);
        _mm_prefetch((const char*) blk + 640, _MM_HINT_T0);
        _mm_prefetch((const char*) blk + 704, _MM_HINT_T0);
        // The twelve scale bytes → sc[0..7] in bytes 0..7 and m[0..7] in bytes 8..15, four bytes at a
        // time (get_scale_min_k4 on 32-bit words, as ggml's AVX2 code does).
        uint32_t u[4];
        memcpy(u, blk + 4, 12);
        u[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
        uint32_t mins03 = u[1] & 0x3f3f3f3fu;
        u[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
        u[2] = mins03;
        u[0] &= 0x3f3f3f3fu;
        __m128i sm = _mm_loadu_si128((const __m128i*) u);
        __m256i sm2 = _mm256_broadcastsi128_si256(sm);
        const int8_t* x = xq + 256 * k;
        const int32_t* bs = xs + 16 * k;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0;
        _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) {
            __m256i v = _mm256_loadu_si256((const __m256i*) (blk + 16 + 32 * i));
            // nibbles 0..15 times x̂ in [-127, 127]: a pair is at most 3810, vpmaddubsw never saturates
            __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(v, m4), _mm256_loadu_si256((const __m256i*) (x + 64 * i)));
            __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                                              _mm256_loadu_si256((const __m256i*) (x + 64 * i + 32)));
            // sc[j] as a 16-bit value in every lane: byte j, then a zeroed byte (index with bit 7 set)
            __m256i sc0 = _mm256_shuffle_epi8(sm2, _mm256_set1_epi16((int16_t) (0x8000 | (2 * i))));
            __m256i sc1 = _mm256_shuffle_epi8(sm2, _mm256_set1_epi16((int16_t) (0x8000 | (2 * i + 1))));
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(lo, sc0));
            s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(hi, sc1));
        }
        // Σ_j m_j·(sum of sub-block j): hadd pairs the runs of 16 into sub-blocks 0,1,4,5 | 2,3,6,7,
        // the 64-bit permute puts them in order.
        __m256i sub = _mm256_hadd_epi32(_mm256_loadu_si256((const __m256i*) bs), _mm256_loadu_si256((const __m256i*) (bs + 8)));
        sub = _mm256_permute4x64_epi64(sub, 0xD8);
        __m256i mins = _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8)), sub);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), _mm256_set1_ps(half_to_float(blk) * xd[k]), acc);
        accMin = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(half_to_float(blk + 2) * xd[k]), accMin);
    }
    return hsum8(_mm256_sub_ps(acc, accMin));
}

AVX2 static void q4_k_avx2(const uint8_t* w, int64_t rowBytes, int32_t rows, const int8_t* xq, const float* xd,
                           const int32_t* xs, int32_t cols, int32_t batch, float* out, int64_t outStride) {
    const int32_t nb = cols / 256;
    for (int32_t r = 0; r < rows; r++) {
        const uint8_t* row = w + rowBytes * r;
        for (int32_t b = 0; b < batch; b++) {
            out[b * outStride + r] = q4_k_row_avx2(row, xq + (int64_t) b * cols, xd + (int64_t) b * nb,
                                                   xs + (int64_t) b * (cols / 16), nb);
        }
    }
}

// Q6_K block (210 bytes): uint8 ql[128], uint8 qh[64], int8 scales[16], fp16 d; value = d·sc·(q − 32),
// q = 4 low bits from ql | 2 high bits from qh, scales per 16 values. In each half h (128 values:
// ql[64h..], qh[32h..]) and l < 32, values 128h + l, +32, +64, +96 take ql[l] low nibble, ql[l+32]
// low, ql[l] high, ql[l+32] high, and bits 0-1, 2-3, 4-5, 6-7 of qh[l]. Scale g covers values
// 16g..16g+15, whose activation run sum is xs[g]: a block is d·dx·(Σ_g sc_g·Σ q·x̂ − 32·Σ_g sc_g·Σ x̂).

/** One Q6_K row against one q8_K activation row: nb blocks of 256. */
AVX2 static float q6_k_row_avx2(const uint8_t* row, const int8_t* xq, const float* xd, const int32_t* xs, int32_t nb) {
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int32_t k = 0; k < nb; k++) {
        const uint8_t* blk = row + 210 * (int64_t) k;
        _mm_prefetch((const char*) blk + 840, _MM_HINT_T0);
        _mm_prefetch((const char*) blk + 904, _MM_HINT_T0);
        _mm_prefetch((const char*) blk + 968, _MM_HINT_T0);
        _mm_prefetch((const char*) blk + 1032, _MM_HINT_T0);
        const int8_t* sc = (const int8_t*) (blk + 192);
        const int8_t* x = xq + 256 * k;
        const int32_t* bs = xs + 16 * k;
        int32_t offset = 0;
        for (int g = 0; g < 16; g++) offset += sc[g] * bs[g];
        __m256i s = _mm256_set1_epi32(0);
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i*) (blk + 64 * h));
            __m256i l1 = _mm256_loadu_si256((const __m256i*) (blk + 64 * h + 32));
            __m256i hb = _mm256_loadu_si256((const __m256i*) (blk + 128 + 32 * h));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
                // q 0..63 times x̂ in [-127, 127]: a pair is at most 16002, vpmaddubsw never saturates
                __m256i p = _mm256_maddubs_epi16(q[c], _mm256_loadu_si256((const __m256i*) (x + 128 * h + 32 * c)));
                int g = 8 * h + 2 * c;   // the first 16 bytes are scale g, the next 16 scale g + 1
                __m256i scales = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(sc[g])),
                                                         _mm_set1_epi16(sc[g + 1]), 1);
                s = _mm256_add_epi32(s, _mm256_madd_epi16(p, scales));
            }
        }
        // the offset of 32 once per block, on lane 0
        s = _mm256_sub_epi32(s, _mm256_setr_epi32(32 * offset, 0, 0, 0, 0, 0, 0, 0));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(half_to_float(blk + 208) * xd[k]), acc);
    }
    return hsum8(acc);
}

AVX2 static void q6_k_avx2(const uint8_t* w, int64_t rowBytes, int32_t rows, const int8_t* xq, const float* xd,
                           const int32_t* xs, int32_t cols, int32_t batch, float* out, int64_t outStride) {
    const int32_t nb = cols / 256;
    for (int32_t r = 0; r < rows; r++) {
        const uint8_t* row = w + rowBytes * r;
        for (int32_t b = 0; b < batch; b++) {
            out[b * outStride + r] = q6_k_row_avx2(row, xq + (int64_t) b * cols, xd + (int64_t) b * nb,
                                                   xs + (int64_t) b * (cols / 16), nb);
        }
    }
}

/**
 * K-quant weights of ggml type `type` (Q4_K or Q6_K; `rows` rows, `rowBytes` apart) times activations
 * quantized by kvs_quantize_q8_k, out[b·outStride + r]; any other type computes nothing.
 */
EXPORT void kvs_matmul_k(int32_t type, const uint8_t* w, int64_t rowBytes, int32_t rows, const int8_t* xq,
                         const float* xd, const int32_t* xs, int32_t cols, int32_t batch, float* out,
                         int64_t outStride) {
    if (kvs_cpu_isa() == ISA_NONE) return;
    switch (type) {
        case TYPE_Q4_K: q4_k_avx2(w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride); break;
        case TYPE_Q6_K: q6_k_avx2(w, rowBytes, rows, xq, xd, xs, cols, batch, out, outStride); break;
        default: break;
    }
}
