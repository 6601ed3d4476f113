// Internal to dg_formats: byte offsets of the ggml block layouts (docs/qwen35-model.md §7.2) and
// one-block dequantisers shared by dequantize_row and dot_row. Fields are read with memcpy because
// blocks of 18/34/210 bytes leave the f16 fields at any alignment.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "engine/formats/dtype.h"

namespace dg::qb {

constexpr int kQK = 32;     // elements per Q4_0 / Q4_1 / Q8_0 block
constexpr int kQKK = 256;   // elements per K-quant super-block

// Field offsets.
constexpr int kQ4_0_Qs = 2;                                   // f16 d; u8 qs[16]
constexpr int kQ4_1_Qs = 4;                                   // f16 d; f16 m; u8 qs[16]
constexpr int kQ8_0_Qs = 2;                                   // f16 d; i8 qs[32]
constexpr int kQ4_K_Scales = 4, kQ4_K_Qs = 16;                // f16 d; f16 dmin; u8 scales[12]; u8 qs[128]
constexpr int kQ5_K_Scales = 4, kQ5_K_Qh = 16, kQ5_K_Qs = 48; // ...; u8 qh[32]; u8 qs[128]
constexpr int kQ6_K_Ql = 0, kQ6_K_Qh = 128, kQ6_K_Sc = 192, kQ6_K_D = 208;  // ql[128]; qh[64]; i8 sc[16]; f16 d

inline uint16_t load_u16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}
inline void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
// Branch-free, inlinable conversions for hot loops (the exported f16_to_f32 lives in another TU, and a
// call per element blocks vectorisation). Selects are written as bit masks so GCC if-converts and
// vectorises them; subnormals go through an exact int->float conversion, so no denormal arithmetic
// (slow on x86) is involved.
inline float f16_to_f32_fast(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    const uint32_t em = h & 0x7fffu;
    const uint32_t is_sub = 0u - static_cast<uint32_t>(em < 0x400u);
    const uint32_t is_special = 0u - static_cast<uint32_t>(em >= 0x7c00u);  // inf / NaN
    // Normal: rebias the exponent by 127 - 15; inf/NaN: a second 112 lifts it to all ones.
    const uint32_t normal = (em << 13) + (112u << 23) + (is_special & (112u << 23));
    const uint32_t sub = std::bit_cast<uint32_t>(static_cast<float>(static_cast<int32_t>(em)) * 5.9604644775390625e-8f);
    return std::bit_cast<float>(((normal & ~is_sub) | (sub & is_sub)) | sign);
}
inline float bf16_to_f32_fast(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }
inline float load_f16(const uint8_t* p) { return f16_to_f32_fast(load_u16(p)); }

// K-quant packed 6-bit (scale, min) pair j of 8 (ggml's get_scale_min_k4).
inline void scale_min_k4(int j, const uint8_t* s, uint8_t* sc, uint8_t* mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = static_cast<uint8_t>((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        *mn = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

inline void dequant_q4_0(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const uint8_t* qs = b + kQ4_0_Qs;
    for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>((qs[j] & 0xF) - 8);
        y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
    }
}

inline void dequant_q4_1(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const float m = load_f16(b + 2);
    const uint8_t* qs = b + kQ4_1_Qs;
    for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>(qs[j] & 0xF) + m;
        y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
    }
}

inline void dequant_q8_0(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + kQ8_0_Qs);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(qs[j]);
}

inline void dequant_q4_k(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const float dmin = load_f16(b + 2);
    const uint8_t* s = b + kQ4_K_Scales;
    const uint8_t* q = b + kQ4_K_Qs;
    for (int c = 0; c < 4; ++c) {
        uint8_t sc, mn;
        scale_min_k4(2 * c, s, &sc, &mn);
        const float d1 = d * sc, m1 = dmin * mn;
        scale_min_k4(2 * c + 1, s, &sc, &mn);
        const float d2 = d * sc, m2 = dmin * mn;
        for (int l = 0; l < 32; ++l) {
            y[64 * c + l] = d1 * static_cast<float>(q[32 * c + l] & 0xF) - m1;
            y[64 * c + 32 + l] = d2 * static_cast<float>(q[32 * c + l] >> 4) - m2;
        }
    }
}

inline void dequant_q5_k(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const float dmin = load_f16(b + 2);
    const uint8_t* s = b + kQ5_K_Scales;
    const uint8_t* qh = b + kQ5_K_Qh;
    const uint8_t* q = b + kQ5_K_Qs;
    for (int c = 0; c < 4; ++c) {
        uint8_t sc, mn;
        scale_min_k4(2 * c, s, &sc, &mn);
        const float d1 = d * sc, m1 = dmin * mn;
        scale_min_k4(2 * c + 1, s, &sc, &mn);
        const float d2 = d * sc, m2 = dmin * mn;
        const int lo_bit = 2 * c, hi_bit = 2 * c + 1;
        for (int l = 0; l < 32; ++l) {
            const int lo = (q[32 * c + l] & 0xF) | (((qh[l] >> lo_bit) & 1) << 4);
            const int hi = (q[32 * c + l] >> 4) | (((qh[l] >> hi_bit) & 1) << 4);
            y[64 * c + l] = d1 * static_cast<float>(lo) - m1;
            y[64 * c + 32 + l] = d2 * static_cast<float>(hi) - m2;
        }
    }
}

inline void dequant_q6_k(const uint8_t* b, float* y) {
    // Pass 1 unpacks the 6-bit levels in element order; pass 2 scales each 16-element sub-block. Both
    // loops are simple enough to vectorise, unlike a fused loop with per-element scale lookups.
    int8_t q[256];
    for (int half = 0; half < 2; ++half) {
        const uint8_t* ql = b + kQ6_K_Ql + 64 * half;
        const uint8_t* qh = b + kQ6_K_Qh + 32 * half;
        int8_t* out = q + 128 * half;
        for (int l = 0; l < 32; ++l) {
            out[l] = static_cast<int8_t>(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
            out[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            out[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            out[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
    const float d = load_f16(b + kQ6_K_D);
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + kQ6_K_Sc);
    for (int j = 0; j < 16; ++j) {
        const float dl = d * sc[j];  // (d * sc) * q, the order ggml multiplies in
        for (int i = 0; i < 16; ++i) y[16 * j + i] = dl * static_cast<float>(q[16 * j + i]);
    }
}

}  // namespace dg::qb
