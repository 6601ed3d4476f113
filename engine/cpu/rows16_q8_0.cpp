// Q8_0 rows in groups of 16: packing a block, putting a row back, and the dot (rows16.h has the layout
// and why).
#include <immintrin.h>

#include <cstring>

#include "engine/cpu/rows16.h"

namespace dg::cpu {
namespace {

constexpr int kBlockBytes = 34;  // one row's Q8_0 block: f16 d, 32 quants

void pack_block(const uint8_t* const* rows, uint8_t* out) {
    for (int r = 0; r < kRows16; ++r) {
        std::memcpy(out + kQ8OffD + 2 * r, rows[r], 2);
        for (int k = 0; k < 8; ++k)
            for (int i = 0; i < 4; ++i) out[kQ8OffQs + 64 * k + 4 * r + i] = rows[r][2 + 4 * k + i] ^ 0x80;
    }
}

void unpack_block(const uint8_t* blk, int r, uint8_t* b) {
    std::memcpy(b, blk + kQ8OffD + 2 * r, 2);
    for (int k = 0; k < 8; ++k)
        for (int i = 0; i < 4; ++i) b[2 + 4 * k + i] = blk[kQ8OffQs + 64 * k + 4 * r + i] ^ 0x80;
}

}  // namespace

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")
namespace {

// Per block of 32 columns: 8 quads of 16 rows x 4 unsigned bytes (q + 128) against the activations' 4
// bytes broadcast, in two accumulators; 128 x the block's activation sum taken off in integers, then one
// conversion and FMA with d_r x d_x for all 16 rows. Blocks alternate between two float accumulators.
void dot_vnni(const uint8_t* group, int64_t n, const Q8Row& x, float* out16) {
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t b = 0; b < n / 32; ++b) {
        // No software prefetch, unlike the Q4_K kernel: the hardware prefetcher follows this one stream,
        // and prefetching 1-16 blocks ahead (to L1 or L2) made it slower: 47-50 against 57-58 GB/s on two
        // cores streaming 3584 x 1024 matrices, and 52-53 against 57-59 tok/s of 0.8B q8_0 decode
        // (PERFORMANCE.md, tenth part).
        const uint8_t* blk = group + b * kQ8Rows16Block;
        const int8_t* xq = x.q + 32 * b;
        __m512i s0 = _mm512_setzero_si512(), s1 = s0;
        for (int k = 0; k < 8; k += 2) {
            int32_t x0, x1;
            std::memcpy(&x0, xq + 4 * k, 4);
            std::memcpy(&x1, xq + 4 * k + 4, 4);
            s0 = _mm512_dpbusd_epi32(s0, _mm512_loadu_si512(blk + kQ8OffQs + 64 * k), _mm512_set1_epi32(x0));
            s1 = _mm512_dpbusd_epi32(s1, _mm512_loadu_si512(blk + kQ8OffQs + 64 * (k + 1)), _mm512_set1_epi32(x1));
        }
        const __m512i isum = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(128 * x.s[b]));
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQ8OffD)));
        acc[b & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d, _mm512_set1_ps(x.d[b])), acc[b & 1]);
    }
    _mm512_storeu_ps(out16, _mm512_add_ps(acc[0], acc[1]));
}

}  // namespace
#pragma GCC pop_options

const Rows16Format& rows16_q8_0() {
    static const Rows16Format f{32, kBlockBytes, pack_block, unpack_block,
                                best_quant_isa() == QuantIsa::kAvx512Vnni ? dot_vnni : nullptr, nullptr};
    return f;
}

}  // namespace dg::cpu
