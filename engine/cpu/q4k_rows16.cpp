// Packing, unpacking and the dot of Q4_K rows in groups of 16 (q4k_rows16.h has the layout and why).
#include "engine/cpu/q4k_rows16.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/formats/quant_blocks.h"

namespace dg::cpu {
namespace {

constexpr int kBlockBytes = 144;  // one row's Q4_K super-block
constexpr int kOffD = kQ4kOffD, kOffDmin = kQ4kOffDmin, kOffSc = kQ4kOffSc, kOffMh = kQ4kOffMh, kOffQs = kQ4kOffQs;

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
    std::memset(out, 0, kQ4kGroupBlockBytes);
    for (int r = 0; r < kQ4kGroupRows; ++r) {
        const uint8_t* b = rows[r];
        std::memcpy(out + kOffD + 2 * r, b, 2);
        std::memcpy(out + kOffDmin + 2 * r, b + 2, 2);
        for (int j = 0; j < 8; ++j) {
            uint8_t sc, mn;
            qb::scale_min_k4(j, b + qb::kQ4_K_Scales, &sc, &mn);
            const int i = 16 * j + r;
            out[kOffSc + i] = uint8_t(sc | (mn & 3) << 6);
            out[kOffMh + i % 64] |= uint8_t((mn >> 2) << (i < 64 ? 0 : 4));
        }
        for (int c = 0; c < 4; ++c)
            for (int k = 0; k < 8; ++k)
                std::memcpy(out + kOffQs + (8 * c + k) * 64 + 4 * r, b + qb::kQ4_K_Qs + 32 * c + 4 * k, 4);
    }
}

// Row r (of 16) of a packed super-block, back in its 144 GGUF bytes.
void unpack_block(const uint8_t* blk, int r, uint8_t* b) {
    std::memcpy(b, blk + kOffD + 2 * r, 2);
    std::memcpy(b + 2, blk + kOffDmin + 2 * r, 2);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; ++j) q4k_rows16_scale_min(blk, j, r, &sc[j], &mn[j]);
    encode_scales_mins_k4(sc, mn, b + qb::kQ4_K_Scales);
    for (int c = 0; c < 4; ++c)
        for (int k = 0; k < 8; ++k)
            std::memcpy(b + qb::kQ4_K_Qs + 32 * c + 4 * k, blk + kOffQs + (8 * c + k) * 64 + 4 * r, 4);
}

}  // namespace

bool can_pack_q4k_rows16(const Matrix& m) {
    return m.type == DType::Q4_K && m.packing == Packing::kRows && m.rows % kQ4kGroupRows == 0 &&
           m.cols % 256 == 0 && m.row_bytes == uint64_t(m.cols / 256 * kBlockBytes) && q4k_rows16_dot_kernel();
}

void pack_q4k_rows16(Matrix& m, uint8_t* data) {
    const int64_t blocks = m.cols / 256, group_bytes = kQ4kGroupRows * int64_t(m.row_bytes);
    std::vector<uint8_t> packed(static_cast<size_t>(group_bytes));
    for (int64_t g = 0; g < m.rows / kQ4kGroupRows; ++g) {
        uint8_t* group = data + g * group_bytes;
        for (int64_t sb = 0; sb < blocks; ++sb) {
            const uint8_t* rows[kQ4kGroupRows];
            for (int r = 0; r < kQ4kGroupRows; ++r) rows[r] = group + r * int64_t(m.row_bytes) + sb * kBlockBytes;
            pack_block(rows, packed.data() + sb * kQ4kGroupBlockBytes);
        }
        std::memcpy(group, packed.data(), size_t(group_bytes));
    }
    m.data = data;
    m.packing = Packing::kQ4kRows16;
}

uint64_t pack_q4k_matrices(ModelWeights& w) {
    struct Ref {
        const uint8_t* begin;
        const uint8_t* end;
        Matrix* m;
    };
    std::vector<Ref> refs;
    w.for_each_matrix([&](Matrix& m) { refs.push_back({m.data, m.data + uint64_t(m.rows) * m.row_bytes, &m}); });
    std::sort(refs.begin(), refs.end(),
              [](const Ref& a, const Ref& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
    uint64_t packed = 0;
    uintptr_t max_end_before = 0;  // of the ranges before the current one
    for (size_t i = 0; i < refs.size();) {
        size_t k = i;  // [i, k): the matrices on exactly these bytes
        while (k < refs.size() && refs[k].begin == refs[i].begin && refs[k].end == refs[i].end) ++k;
        const bool alone = max_end_before <= uintptr_t(refs[i].begin) &&
                           (k == refs.size() || refs[k].begin >= refs[i].end);
        bool same_shape = true;
        for (size_t j = i + 1; j < k; ++j) {
            const Matrix &a = *refs[i].m, &b = *refs[j].m;
            same_shape = same_shape && a.type == b.type && a.rows == b.rows && a.cols == b.cols && a.row_bytes == b.row_bytes;
        }
        if (alone && same_shape && can_pack_q4k_rows16(*refs[i].m)) {
            pack_q4k_rows16(*refs[i].m, const_cast<uint8_t*>(refs[i].begin));
            for (size_t j = i + 1; j < k; ++j) refs[j].m->packing = Packing::kQ4kRows16;
            packed += uint64_t(refs[i].end - refs[i].begin);
        }
        for (size_t j = i; j < k; ++j) max_end_before = std::max(max_end_before, uintptr_t(refs[j].end));
        i = k;
    }
    return packed;
}

const uint8_t* plain_row(const Matrix& m, int64_t r, uint8_t* scratch) {
    if (m.packing == Packing::kRows) return m.row(r);
    const uint8_t* group = m.data + (r / kQ4kGroupRows) * kQ4kGroupRows * int64_t(m.row_bytes);
    for (int64_t sb = 0; sb < m.cols / 256; ++sb)
        unpack_block(group + sb * kQ4kGroupBlockBytes, int(r % kQ4kGroupRows), scratch + sb * kBlockBytes);
    return scratch;
}

void q4k_rows16_dot_scalar(const uint8_t* group, int64_t n, const Q8Row& x, float* out16) {
    uint8_t b[kBlockBytes];
    for (int r = 0; r < kQ4kGroupRows; ++r) {
        float sum = 0.f;
        for (int64_t sb = 0; sb < n / 256; ++sb) {
            unpack_block(group + sb * kQ4kGroupBlockBytes, r, b);
            const float d = qb::load_f16(b), dmin = qb::load_f16(b + 2);
            for (int j = 0; j < 8; ++j) {
                uint8_t sc, mn;
                qb::scale_min_k4(j, b + qb::kQ4_K_Scales, &sc, &mn);
                const int64_t blk = 8 * sb + j;  // the activations' 32-element block
                int32_t isum = 0;
                for (int l = 0; l < 32; ++l) {
                    const uint8_t q = b[qb::kQ4_K_Qs + 32 * (j / 2) + l];
                    isum += int32_t(j % 2 ? q >> 4 : q & 15) * x.q[32 * blk + l];
                }
                sum += d * float(sc) * x.d[blk] * float(isum) - dmin * float(mn) * x.d[blk] * float(x.s[blk]);
            }
        }
        out16[r] = sum;
    }
}

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
        const uint8_t* blk = group + sb * kQ4kGroupBlockBytes;
        // Two blocks ahead (the next group's when this one ends): without it the loads wait on memory and
        // decode ran ~30% slower (PERFORMANCE.md, ninth part); one to three blocks ahead measured alike.
        for (int64_t o = 0; o < kQ4kGroupBlockBytes; o += 64)
            _mm_prefetch(reinterpret_cast<const char*>(blk + 2 * kQ4kGroupBlockBytes + o), _MM_HINT_T0);
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kOffD)));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kOffDmin)));
        const int8_t* xq = x.q + 256 * sb;
        for (int c = 0; c < 4; ++c) {
            __m512i lo0 = _mm512_setzero_si512(), lo1 = lo0, hi0 = lo0, hi1 = lo0;
            const uint8_t* qs = blk + kOffQs + 8 * c * 64;
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
                const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kOffSc + 16 * j)));
                const __m512i mh = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kOffMh + 16 * (j % 4))));
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

Q4kRows16DotFn q4k_rows16_dot_kernel() {
    static const bool ok = best_quant_isa() == QuantIsa::kAvx512Vnni;
    return ok ? dot_vnni : nullptr;
}

}  // namespace dg::cpu
