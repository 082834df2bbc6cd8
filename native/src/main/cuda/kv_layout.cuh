// The paged KV-cache block layout shared by the KV kernels (and by PagedKvLayout on the Java side).
//
// A pool (one for keys, one for values, per layer) is an array of blocks of B tokens. A block holds
// every KV head; each head owns `headBytes` contiguous bytes (a multiple of 16):
//
//   F32   token t, channel c at float  [t*D + c]
//   F16   token t, channel c at fp16   [t*D + c]
//   INT8  codes: int8 [t*D + c]; then, from the parameter offset P = roundUp16(B*D), one fp16
//         scale per (token, group of Gq channels) at [t*(D/Gq) + c/Gq].
//         Symmetric: x = code * scale, scale = absmax / 127.
//   INT4  codes: byte [t*D/2 + c/2], even channel in the low nibble; then, from P = roundUp16(B*D/2),
//         an fp16 (scale, min) pair per (token, group) at pair index [t*(D/Gq) + c/Gq].
//         Asymmetric: x = code * scale + min, scale = (max - min) / 15.
//
// Head h of block b starts at pool + b*blockBytes + h*headBytes. A token's "slot" is b*B + t; a
// sequence's block table lists its blocks in order, so its token i lives in slot
// table[i / B] * B + i % B. Quantization parameters are per token (computed when the token is
// written, from that token alone), so appending never rewrites older tokens.
#pragma once
#include "common.cuh"

#define KV_F32 0
#define KV_F16 1
#define KV_I8 2
#define KV_I4 3

// Start of the quantization parameters inside a head: after the codes, 16-byte aligned so that the
// fp16 loads are aligned whatever B and D are.
KV_DEV long long kv_params_offset(int B, int codeBytesPerToken) {
    return ((long long) B * codeBytesPerToken + 15) & ~15ll;
}

template <int F> struct KvTok;

template <> struct KvTok<KV_F32> {
    const float* p;
    KV_DEV KvTok(const uint8_t* head, int t, int B, int D, int Gq) : p(reinterpret_cast<const float*>(head) + t * D) {}
    KV_DEV float operator()(int c) const { return p[c]; }
};

template <> struct KvTok<KV_F16> {
    const uint16_t* p;
    KV_DEV KvTok(const uint8_t* head, int t, int B, int D, int Gq) : p(reinterpret_cast<const uint16_t*>(head) + t * D) {}
    KV_DEV float operator()(int c) const { return f16_to_f32(p[c]); }
};

template <> struct KvTok<KV_I8> {
    const int8_t* codes;
    const uint16_t* scales;
    int gq;
    KV_DEV KvTok(const uint8_t* head, int t, int B, int D, int Gq)
        : codes(reinterpret_cast<const int8_t*>(head) + t * D),
          scales(reinterpret_cast<const uint16_t*>(head + kv_params_offset(B, D)) + t * (D / Gq)), gq(Gq) {}
    KV_DEV float operator()(int c) const { return (float) codes[c] * f16_to_f32(scales[c / gq]); }
};

template <> struct KvTok<KV_I4> {
    const uint8_t* codes;
    const uint16_t* params;
    int gq;
    KV_DEV KvTok(const uint8_t* head, int t, int B, int D, int Gq)
        : codes(head + t * (D >> 1)),
          params(reinterpret_cast<const uint16_t*>(head + kv_params_offset(B, D >> 1)) + 2 * t * (D / Gq)), gq(Gq) {}
    KV_DEV float operator()(int c) const {
        const uint8_t byte = codes[c >> 1];
        const int q = (c & 1) ? (byte >> 4) : (byte & 0xF);
        const int g = c / gq;
        return (float) q * f16_to_f32(params[2 * g]) + f16_to_f32(params[2 * g + 1]);
    }
};

KV_DEV const uint8_t* kv_head(const uint8_t* pool, int block, int head, long long headBytes, long long blockBytes) {
    return pool + (long long) block * blockBytes + (long long) head * headBytes;
}

// Block-local position of token i of a sequence: fills block and t.
KV_DEV void kv_locate(const int* table, int i, int B, int& block, int& t) {
    block = table[i / B];
    t = i - (i / B) * B;
}
