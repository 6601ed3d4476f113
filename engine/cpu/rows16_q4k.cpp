// Q4_K rows in groups of 16: packing a block, putting a row back, and the dot (rows16.h has the layout
// and why).
#include "engine/cpu/rows16.h"

#include <immintrin.h>

#include <cstring>

#include "engine/formats/quant_blocks.h"

namespace dg::cpu {
namespace {

constexpr int kBlockBytes = 144;  // one row's Q4_K super-block

// The inverse of qb::scale_min_k4 for j = 0..7: the 12 bytes that decode to these 6-bit values (every
// 12-byte string decodes to a distinct set of 16 values, so this gives back the file's bytes).
void encode_scales_mins_k4(const uint8_t* sc, const uint8_t* mn, uint8_t* s) {
    for (int j = 0; j < 4; ++j) {
        s[j] = uint8_t((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = uint8_t((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        s[j + 8] = uint8_t((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
}

// One packed super-block from 16 GGUF ones (rows[r], each 144 bytes).
void pack_block(const uint8_t* const* rows, uint8_t* out) {
    std::memset(out, 0, kQ4kRows16Block);
    for (int r = 0; r < kRows16; ++r) {
        const uint8_t* b = rows[r];
        std::memcpy(out + kQ4kOffD + 2 * r, b, 2);
        std::memcpy(out + kQ4kOffDmin + 2 * r, b + 2, 2);
        for (int j = 0; j < 8; ++j) {
            uint8_t sc, mn;
            qb::scale_min_k4(j, b + qb::kQ4_K_Scales, &sc, &mn);
            const int i = 16 * j + r;
            out[kQ4kOffSc + i] = uint8_t(sc | (mn & 3) << 6);
            out[kQ4kOffMh + i % 64] |= uint8_t((mn >> 2) << (i < 64 ? 0 : 4));
        }
        for (int c = 0; c < 4; ++c)
            for (int k = 0; k < 8; ++k)
                std::memcpy(out + kQ4kOffQs + (8 * c + k) * 64 + 4 * r, b + qb::kQ4_K_Qs + 32 * c + 4 * k, 4);
    }
}

// Row r (of 16) of a packed super-block, back in its 144 GGUF bytes.
void unpack_block(const uint8_t* blk, int r, uint8_t* b) {
    std::memcpy(b, blk + kQ4kOffD + 2 * r, 2);
    std::memcpy(b + 2, blk + kQ4kOffDmin + 2 * r, 2);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; ++j) q4k_rows16_scale_min(blk, j, r, &sc[j], &mn[j]);
    encode_scales_mins_k4(sc, mn, b + qb::kQ4_K_Scales);
    for (int c = 0; c < 4; ++c)
        for (int k = 0; k < 8; ++k)
            std::memcpy(b + qb::kQ4_K_Qs + 32 * c + 4 * k, blk + kQ4kOffQs + (8 * c + k) * 64 + 4 * r, 4);
}

}  // namespace

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")
namespace {

// Per super-block and pair c of sub-blocks: 8 quads of 16 rows x 4 bytes; the low nibbles meet the
// activations of sub-block 2c (4 bytes broadcast to every row), the high nibbles, kept in place (16 x
// their value), those of 2c + 1. Two accumulators per sub-block (even and odd quads) halve the vpdpbusd
// dependency chains. Each sub-block's 16 integer sums are then scaled per row in float:
// d_r x scale_rj x d_x (the 1/16 of the high nibbles folded in), and the mins' dmin_r x min_rj x d_x x s.
void dot_vnni(const uint8_t* group, int64_t n, const Q8Row& x, float* out16) {
    const __m512i low4 = _mm512_set1_epi8(0x0F), high4 = _mm512_set1_epi8(char(0xF0));
    const __m512i m63 = _mm512_set1_epi32(63), m15 = _mm512_set1_epi32(15);
    __m512 acc = _mm512_setzero_ps(), mins = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < n / 256; ++sb) {
        const uint8_t* blk = group + sb * kQ4kRows16Block;
        // Two blocks ahead (the next group's when this one ends): without it the loads wait on memory and
        // decode ran ~30% slower (PERFORMANCE.md, ninth part); one to three blocks ahead measured alike.
        prefetch_rows16_block(blk + 2 * kQ4kRows16Block, kQ4kRows16Block);
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQ4kOffD)));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQ4kOffDmin)));
        const int8_t* xq = x.q + 256 * sb;
        for (int c = 0; c < 4; ++c) {
            __m512i lo0 = _mm512_setzero_si512(), lo1 = lo0, hi0 = lo0, hi1 = lo0;
            const uint8_t* qs = blk + kQ4kOffQs + 8 * c * 64;
            for (int k = 0; k < 8; k += 2) {
                const __m512i q0 = _mm512_loadu_si512(qs + 64 * k), q1 = _mm512_loadu_si512(qs + 64 * (k + 1));
                int32_t xl0, xl1, xh0, xh1;
                std::memcpy(&xl0, xq + 64 * c + 4 * k, 4);
                std::memcpy(&xl1, xq + 64 * c + 4 * k + 4, 4);
                std::memcpy(&xh0, xq + 64 * c + 32 + 4 * k, 4);
                std::memcpy(&xh1, xq + 64 * c + 32 + 4 * k + 4, 4);
                lo0 = _mm512_dpbusd_epi32(lo0, _mm512_and_si512(q0, low4), _mm512_set1_epi32(xl0));
                lo1 = _mm512_dpbusd_epi32(lo1, _mm512_and_si512(q1, low4), _mm512_set1_epi32(xl1));
                hi0 = _mm512_dpbusd_epi32(hi0, _mm512_and_si512(q0, high4), _mm512_set1_epi32(xh0));
                hi1 = _mm512_dpbusd_epi32(hi1, _mm512_and_si512(q1, high4), _mm512_set1_epi32(xh1));
            }
            const __m512i isum[2] = {_mm512_add_epi32(lo0, lo1), _mm512_add_epi32(hi0, hi1)};
            for (int h = 0; h < 2; ++h) {
                const int j = 2 * c + h;
                const int64_t b = 8 * sb + j;
                const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQ4kOffSc + 16 * j)));
                const __m512i mh = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQ4kOffMh + 16 * (j % 4))));
                const __m512i mn = _mm512_or_si512(_mm512_srli_epi32(v, 6),
                                                   _mm512_slli_epi32(j < 4 ? _mm512_and_si512(mh, m15) : _mm512_srli_epi32(mh, 4), 2));
                const __m512 scale = _mm512_cvtepi32_ps(_mm512_and_si512(v, m63));
                const float dx = x.d[b] * (h ? 1.f / 16 : 1.f);
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[h]), _mm512_mul_ps(_mm512_mul_ps(d, _mm512_set1_ps(dx)), scale), acc);
                mins = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mn), _mm512_mul_ps(dmin, _mm512_set1_ps(x.d[b] * float(x.s[b]))), mins);
            }
        }
    }
    _mm512_storeu_ps(out16, _mm512_sub_ps(acc, mins));
}

}  // namespace
#pragma GCC pop_options

const Rows16Format& rows16_q4k() {
    static const Rows16Format f{256, kBlockBytes, pack_block, unpack_block,
                                best_quant_isa() == QuantIsa::kAvx512Vnni ? dot_vnni : nullptr, nullptr};
    return f;
}

}  // namespace dg::cpu
