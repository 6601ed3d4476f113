// Q6_K rows in groups of 16: packing a block, putting a row back, and the dot (rows16.h has the layout
// and why).
#include <immintrin.h>

#include <cstring>

#include "engine/cpu/rows16.h"
#include "engine/formats/quant_blocks.h"

namespace dg::cpu {
namespace {

constexpr int kBlockBytes = 210;  // one row's Q6_K super-block

void pack_block(const uint8_t* const* rows, uint8_t* out) {
    for (int r = 0; r < kRows16; ++r) {
        const uint8_t* b = rows[r];
        for (int k = 0; k < 32; ++k) std::memcpy(out + kQ6kOffQl + 64 * k + 4 * r, b + qb::kQ6_K_Ql + 4 * k, 4);
        for (int k = 0; k < 16; ++k) std::memcpy(out + kQ6kOffQh + 64 * k + 4 * r, b + qb::kQ6_K_Qh + 4 * k, 4);
        for (int j = 0; j < 16; ++j) out[kQ6kOffSc + 16 * j + r] = b[qb::kQ6_K_Sc + j];
        std::memcpy(out + kQ6kOffD + 2 * r, b + qb::kQ6_K_D, 2);
    }
}

void unpack_block(const uint8_t* blk, int r, uint8_t* b) {
    for (int k = 0; k < 32; ++k) std::memcpy(b + qb::kQ6_K_Ql + 4 * k, blk + kQ6kOffQl + 64 * k + 4 * r, 4);
    for (int k = 0; k < 16; ++k) std::memcpy(b + qb::kQ6_K_Qh + 4 * k, blk + kQ6kOffQh + 64 * k + 4 * r, 4);
    for (int j = 0; j < 16; ++j) b[qb::kQ6_K_Sc + j] = blk[kQ6kOffSc + 16 * j + r];
    std::memcpy(b + qb::kQ6_K_D, blk + kQ6kOffD + 2 * r, 2);
}

}  // namespace

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")
namespace {

// Per half h of a super-block (elements 128h .. 128h + 127) and quad k of its 32 columns l: one register
// of high bits (row r's qh byte 32h + l at dword r: the 2-bit tops of elements 128h + 32m + l, m = 0..3)
// and two of low nibbles (ql bytes 64h + l and 64h + 32 + l: elements 128h + l, + 64 and 128h + 32 + l,
// + 96) give the four 6-bit unsigned quads (q, 0..63) of 16 rows, each against its 4 activations
// broadcast. The integer sum of sub-block j (16 elements: 4 quads) is corrected for the format's offset
// (q - 32: minus 32 x the sub-block's activation sum, x.s16) and multiplied by the row's int8 scale in
// integers; the two sub-blocks of a 32-element activation block then take its scale in one FMA, and the
// rows' d at the end of the super-block.
void dot_vnni(const uint8_t* group, int64_t n, const Q8Row& x, float* out16) {
    const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < n / 256; ++sb) {
        const uint8_t* blk = group + sb * kQ6kRows16Block;
        // Two blocks ahead, as the Q4_K kernel: without it this kernel read 19-20 GB/s against 48-54 on the
        // 0.8B q4_k_m file's Q6_K matrices (its three interleaved streams per block defeat the hardware
        // prefetcher); one or four blocks ahead measured alike (PERFORMANCE.md, eleventh part).
        prefetch_rows16_block(blk + 2 * kQ6kRows16Block, kQ6kRows16Block);
        const int8_t* xq = x.q + 256 * sb;
        __m512 block_acc = _mm512_setzero_ps();  // sum over the activation blocks of d_x x (scaled integer sums)
        for (int h = 0; h < 2; ++h) {
            __m512i isum[4][2];  // [m][first or second sub-block of the 32 elements 128h + 32m ..]
            for (auto& pair : isum) pair[0] = pair[1] = _mm512_setzero_si512();
            for (int k = 0; k < 8; ++k) {
                const __m512i qh = _mm512_loadu_si512(blk + kQ6kOffQh + 64 * (8 * h + k));
                const __m512i a = _mm512_loadu_si512(blk + kQ6kOffQl + 64 * (16 * h + k));
                const __m512i b = _mm512_loadu_si512(blk + kQ6kOffQl + 64 * (16 * h + 8 + k));
                const __m512i q[4] = {
                    _mm512_or_si512(_mm512_and_si512(a, low4), _mm512_and_si512(_mm512_slli_epi16(qh, 4), bits45)),
                    _mm512_or_si512(_mm512_and_si512(b, low4), _mm512_and_si512(_mm512_slli_epi16(qh, 2), bits45)),
                    _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(a, 4), low4), _mm512_and_si512(qh, bits45)),
                    _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(b, 4), low4),
                                    _mm512_and_si512(_mm512_srli_epi16(qh, 2), bits45)),
                };
                for (int m = 0; m < 4; ++m) {
                    int32_t xs;
                    std::memcpy(&xs, xq + 128 * h + 32 * m + 4 * k, 4);
                    isum[m][k / 4] = _mm512_dpbusd_epi32(isum[m][k / 4], q[m], _mm512_set1_epi32(xs));
                }
            }
            for (int m = 0; m < 4; ++m) {
                __m512i scaled = _mm512_setzero_si512();
                for (int e = 0; e < 2; ++e) {
                    const int j = 8 * h + 2 * m + e;
                    const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQ6kOffSc + 16 * j)));
                    const __m512i centred = _mm512_sub_epi32(isum[m][e], _mm512_set1_epi32(32 * x.s16[16 * sb + j]));
                    scaled = _mm512_add_epi32(scaled, _mm512_mullo_epi32(centred, sc));
                }
                block_acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(scaled), _mm512_set1_ps(x.d[8 * sb + 4 * h + m]), block_acc);
            }
        }
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQ6kOffD)));
        acc = _mm512_fmadd_ps(d, block_acc, acc);
    }
    _mm512_storeu_ps(out16, acc);
}

}  // namespace
#pragma GCC pop_options

const Rows16Format& rows16_q6k() {
    static const Rows16Format f{256, kBlockBytes, pack_block, unpack_block,
                                best_quant_isa() == QuantIsa::kAvx512Vnni ? dot_vnni : nullptr, nullptr};
    return f;
}

}  // namespace dg::cpu
