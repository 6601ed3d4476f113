// BF16 rows in groups of 16: packing a block, putting a row back, and the dot (rows16.h has the layout
// and why).
#include <immintrin.h>

#include <cstring>

#include "engine/cpu/gemm.h"
#include "engine/cpu/rows16.h"

namespace dg::cpu {
namespace {

constexpr int kBlockBytes = 64;  // one row's 32 bf16 values

void pack_block(const uint8_t* const* rows, uint8_t* out) {
    for (int p = 0; p < 16; ++p)
        for (int r = 0; r < kRows16; ++r) std::memcpy(out + 64 * p + 4 * r, rows[r] + 4 * p, 4);
}

void unpack_block(const uint8_t* blk, int r, uint8_t* b) {
    for (int p = 0; p < 16; ++p) std::memcpy(b + 4 * p, blk + 64 * p + 4 * r, 4);
}

}  // namespace

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512bf16")
namespace {

// Per block of 32 columns: 16 pairs of 16 rows x 2 bf16 against the activations' pair broadcast, one
// vdpbf16ps each (every f32 lane a row), in four chains. No software prefetch: as for Q8_0, the hardware
// prefetcher follows the one stream, and prefetching slowed it (PERFORMANCE.md, tenth part).
void dot_bf16(const uint8_t* group, int64_t n, const uint16_t* xb, float* out16) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* blk = group + b * kBf16Rows16Block;
        const uint16_t* x = xb + 32 * b;
        for (int p = 0; p < 16; p += 4) {
            int32_t x0, x1, x2, x3;
            std::memcpy(&x0, x + 2 * p, 4);
            std::memcpy(&x1, x + 2 * p + 2, 4);
            std::memcpy(&x2, x + 2 * p + 4, 4);
            std::memcpy(&x3, x + 2 * p + 6, 4);
            a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(blk + 64 * p), (__m512bh)_mm512_set1_epi32(x0));
            a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(blk + 64 * p + 64), (__m512bh)_mm512_set1_epi32(x1));
            a2 = _mm512_dpbf16_ps(a2, (__m512bh)_mm512_loadu_si512(blk + 64 * p + 128), (__m512bh)_mm512_set1_epi32(x2));
            a3 = _mm512_dpbf16_ps(a3, (__m512bh)_mm512_loadu_si512(blk + 64 * p + 192), (__m512bh)_mm512_set1_epi32(x3));
        }
    }
    _mm512_storeu_ps(out16, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

}  // namespace
#pragma GCC pop_options

const Rows16Format& rows16_bf16() {
    static const Rows16Format f{32, kBlockBytes, pack_block, unpack_block, nullptr,
                                has_avx512_bf16() ? dot_bf16 : nullptr};
    return f;
}

}  // namespace dg::cpu
