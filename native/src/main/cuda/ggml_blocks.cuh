// Dequantization of ggml weight rows, in the block layouts ggml stores (ggml-common.h):
//
//   Q4_0  18 B / 32 values: f16 d, 16 B nibbles; value j<16 is low nibble of qs[j], j>=16 the high
//         nibble of qs[j-16]; w = (q - 8) * d
//   Q8_0  34 B / 32 values: f16 d, 32 int8; w = q * d
//   Q4_K 144 B / 256 values: f16 d, f16 dmin, 12 B of 6-bit scales and mins for 8 sub-blocks of 32,
//         128 B nibbles; sub-block 2p uses the low nibbles of qs[32p..32p+31], 2p+1 the high ones;
//         w = d * sc * q - dmin * m
//   Q6_K 210 B / 256 values: 128 B low nibbles (ql), 64 B high 2-bit pairs (qh), 16 int8 scales,
//         f16 d; w = d * scale * (q - 32)
//
// Every kernel reads weights in groups of 8 consecutive values of a row: group g covers columns
// 8g .. 8g+7. Consecutive lanes of a warp take consecutive groups, so a warp's loads stay dense
// for every format. Row lengths of quantized types are multiples of their block size; F32, F16
// and BF16 rows may end in a partial group (partialGroups), read one value at a time with one().
#pragma once
#include "common.cuh"

template <int T> struct RowFormat;

template <> struct RowFormat<GGML_F32> {
    static constexpr bool partialGroups = true;
    KV_DEV static void group(const uint8_t* row, int g, float v[8]) {
        const float* p = reinterpret_cast<const float*>(row) + 8 * g;
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = p[e];
    }
    KV_DEV static float one(const uint8_t* row, int c) { return reinterpret_cast<const float*>(row)[c]; }
};

template <> struct RowFormat<GGML_F16> {
    static constexpr bool partialGroups = true;
    KV_DEV static void group(const uint8_t* row, int g, float v[8]) {
        const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + 8 * g;
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = f16_to_f32(p[e]);
    }
    KV_DEV static float one(const uint8_t* row, int c) {
        return f16_to_f32(reinterpret_cast<const uint16_t*>(row)[c]);
    }
};

template <> struct RowFormat<GGML_BF16> {
    static constexpr bool partialGroups = true;
    KV_DEV static void group(const uint8_t* row, int g, float v[8]) {
        const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + 8 * g;
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = bf16_to_f32(p[e]);
    }
    KV_DEV static float one(const uint8_t* row, int c) {
        return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[c]);
    }
};

template <> struct RowFormat<GGML_Q4_0> {
    static constexpr bool partialGroups = false;
    KV_DEV static void group(const uint8_t* row, int g, float v[8]) {
        const uint8_t* b = row + (g >> 2) * 18;
        const int part = g & 3;                       // values 8*part .. 8*part+7 of the block
        const float d = f16_to_f32(load_u16(b));
        const uint8_t* qs = b + 2 + (part & 1) * 8;   // parts 0,2 read qs[0..7]; 1,3 read qs[8..15]
        const int shift = (part >> 1) * 4;            // parts 2,3 are the high nibbles
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = (float) (((qs[e] >> shift) & 0xF) - 8) * d;
    }
    KV_DEV static float one(const uint8_t* row, int c) { return 0.0f; }   // never called: rows are whole blocks
};

template <> struct RowFormat<GGML_Q8_0> {
    static constexpr bool partialGroups = false;
    KV_DEV static void group(const uint8_t* row, int g, float v[8]) {
        const uint8_t* b = row + (g >> 2) * 34;
        const float d = f16_to_f32(load_u16(b));
        const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2 + (g & 3) * 8);
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = (float) qs[e] * d;
    }
    KV_DEV static float one(const uint8_t* row, int c) { return 0.0f; }   // never called: rows are whole blocks
};

// 6-bit scale and min of sub-block j of a Q4_K super-block: the first four sit in the low six bits
// of bytes j and j+4; the last four are split into a low nibble (byte j+4) and two high bits taken
// from the top of bytes j-4 and j.
KV_DEV void q4k_scale_min(int j, const uint8_t* s, int& sc, int& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

template <> struct RowFormat<GGML_Q4_K> {
    static constexpr bool partialGroups = false;
    KV_DEV static void group(const uint8_t* row, int g, float v[8]) {
        const uint8_t* b = row + (g >> 5) * 144;
        const int gi = g & 31;          // group inside the super-block
        const int sub = gi >> 2;        // sub-block of 32 values
        const int part = gi & 3;        // 8-value part of the sub-block
        const float d = f16_to_f32(load_u16(b));
        const float dmin = f16_to_f32(load_u16(b + 2));
        int sc, m;
        q4k_scale_min(sub, b + 4, sc, m);
        const float scale = d * (float) sc, mn = dmin * (float) m;
        const uint8_t* qs = b + 16 + (sub >> 1) * 32 + part * 8;
        const int shift = (sub & 1) * 4;
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = scale * (float) ((qs[e] >> shift) & 0xF) - mn;
    }
    KV_DEV static float one(const uint8_t* row, int c) { return 0.0f; }   // never called: rows are whole blocks
};

template <> struct RowFormat<GGML_Q6_K> {
    static constexpr bool partialGroups = false;
    KV_DEV static void group(const uint8_t* row, int g, float v[8]) {
        const uint8_t* b = row + (g >> 5) * 210;
        const int gi = g & 31;
        const int unit = gi >> 2;       // 32-value unit: half (unit / 4) and quarter (unit % 4)
        const int part = gi & 3;
        const int half = unit >> 2, quarter = unit & 3;
        const int l0 = part * 8;        // position inside the 32 values of the quarter
        const uint8_t* ql = b + half * 64 + (quarter & 1) * 32 + l0;
        const uint8_t* qh = b + 128 + half * 32 + l0;
        const int8_t scale = reinterpret_cast<const int8_t*>(b + 192)[half * 8 + quarter * 2 + (l0 >> 4)];
        const float d = f16_to_f32(load_u16(b + 208)) * (float) scale;
        const int lowShift = (quarter >> 1) * 4, highShift = quarter * 2;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const int q = ((ql[e] >> lowShift) & 0xF) | (((qh[e] >> highShift) & 3) << 4);
            v[e] = d * (float) (q - 32);
        }
    }
    KV_DEV static float one(const uint8_t* row, int c) { return 0.0f; }   // never called: rows are whole blocks
};
