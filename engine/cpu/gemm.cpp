// The prefill GEMM of gemm.h. Everything SIMD here is AVX-512 (VNNI for the quantised types, BF16 for
// bf16 weights), compiled in `#pragma GCC target` regions and only called when cpuid says the CPU has it.
#include "engine/cpu/gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/cpu/parallel.h"
#include "engine/cpu/quant_dot.h"
#include "engine/cpu/rows16.h"
#include "engine/formats/quant_blocks.h"

namespace dg::cpu {
namespace {

constexpr int kLanes = 16;   // tokens per register
constexpr int kTokVecs = 2;  // token registers per micro-kernel: 32 tokens
// The bf16 micro-kernel takes 64 tokens: vdpbf16ps's latency needs more than 8 independent accumulators
// to keep both FMA pipes busy (4 rows x 4 token registers = 16), and its operands come from L2 anyway.
constexpr int kTokVecsBf16 = 4;
constexpr int kRows = 4;     // weight rows per micro-kernel
constexpr int kPanel = 16;   // weight rows unpacked per step (4 micro-kernel row groups)


// Per weight type: the group size (elements per scale) and whether groups carry a min (w = dw*q + mw).
struct QuantLayout {
    int group;
    bool has_min;
};
bool quant_layout(DType t, QuantLayout* l) {
    switch (t) {
        case DType::Q8_0: case DType::Q4_0: *l = {32, false}; return true;
        case DType::Q4_1: case DType::Q4_K: case DType::Q5_K: *l = {32, true}; return true;
        case DType::Q6_K: *l = {16, false}; return true;
        default: return false;
    }
}

// A panel of weight rows unpacked for the int8 kernel: row r's int8 values, and per group g its scale,
// min, and 128 x (sum of its int8 values) - the term the activations' +128 adds to the integer dot. Types
// with a min (Q4_1, Q4_K, Q5_K) have unsigned weights (0..31), which go in vpdpbusd's unsigned operand
// against signed activations: no +128, no correction (corr is not written for them).
struct QPanel {
    int8_t* w;      // [kPanel][cols]
    float* dw;      // [kPanel][groups]
    float* mw;      // [kPanel][groups] (has_min types)
    int32_t* corr;  // [kPanel][groups]
};

// The activations of one call for the int8 kernel, token-transposed: for token vector v (16 tokens) and
// element quad j, 64 bytes = 16 tokens x 4 consecutive elements, each q + 128 (so unsigned) for weight
// types without a min, q itself for those with one; per 32-block b, the tokens' scales d and d x (sum of
// q) as 16-lane vectors. Padding tokens are q = 0, d = 0.
struct QActs {
    const uint8_t* u;  // [vecs][cols / 4][64]
    const float* d;    // [vecs][cols / 32][16]
    const float* ds;   // [vecs][cols / 32][16]
};

// The activations for the float kernels: f32 [vecs][cols][16], or bf16 pairs [vecs][cols / 2][16][2].
struct FActs {
    const float* f;
    const uint16_t* bf;
};

}  // namespace

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni,avx512bf16")
namespace {

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline float f16(const uint8_t* p) { return _cvtsh_ss(qb::load_u16(p)); }  // one vcvtph2ps
// Sum of 32 signed bytes, via |sad| of the bytes flipped to unsigned.
inline int32_t sum_s8(__m256i w) {
    const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(w, _mm256_set1_epi8(char(0x80))), _mm256_setzero_si256());
    const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
    return int32_t(_mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1)) - 32 * 128;
}
// The two 16-byte halves' sums.
inline void sum_s8_halves(__m256i w, int32_t* lo, int32_t* hi) {
    const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(w, _mm256_set1_epi8(char(0x80))), _mm256_setzero_si256());
    const __m128i a = _mm256_castsi256_si128(sad), b = _mm256_extracti128_si256(sad, 1);
    *lo = int32_t(_mm_cvtsi128_si64(a) + _mm_extract_epi64(a, 1)) - 16 * 128;
    *hi = int32_t(_mm_cvtsi128_si64(b) + _mm_extract_epi64(b, 1)) - 16 * 128;
}
inline __m256i nibbles32(const uint8_t* p) {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F));
}

// One 32-element group of int8 weights into the panel row.
inline void put32(int8_t* w, float* dw, int32_t* corr, int64_t g, __m256i v, float scale) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(w + 32 * g), v);
    dw[g] = scale;
    if (corr) corr[g] = 128 * sum_s8(v);
}

// Row rr (of 16) of a packed Q4_K group (rows16.h) as unpack_row would give it, read in place: the row's
// 4-byte quads lie 64 bytes apart, gathered 8 at a time.
void unpack_q4k_rows16_row(const uint8_t* group, int rr, int64_t cols, int8_t* w, float* dw, float* mw) {
    const __m256i low4 = _mm256_set1_epi8(0x0F), quads = _mm256_setr_epi32(0, 64, 128, 192, 256, 320, 384, 448);
    for (int64_t sb = 0; sb < cols / 256; ++sb) {
        const uint8_t* blk = group + sb * kQ4kRows16Block;
        const float d = f16(blk + kQ4kOffD + 2 * rr), dmin = f16(blk + kQ4kOffDmin + 2 * rr);
        for (int c = 0; c < 4; ++c) {
            const __m256i q = _mm256_i32gather_epi32(reinterpret_cast<const int*>(blk + kQ4kOffQs + 8 * c * 64 + 4 * rr), quads, 1);
            const __m256i lo = _mm256_and_si256(q, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
            const int64_t g = 8 * sb + 2 * c;
            uint8_t sc, mn;
            q4k_rows16_scale_min(blk, 2 * c, rr, &sc, &mn);
            put32(w, dw, nullptr, g, lo, d * sc);
            mw[g] = -dmin * mn;
            q4k_rows16_scale_min(blk, 2 * c + 1, rr, &sc, &mn);
            put32(w, dw, nullptr, g + 1, hi, d * sc);
            mw[g + 1] = -dmin * mn;
        }
    }
}

// Half h of Q6_K super-block sb of a row from its 32 low-nibble bytes 64h .. (ql0), 64h + 32 .. (ql1) and
// 32 high-bit bytes (qh): four 32-element blocks of q - 32, each as two groups of 16 with their scales
// (sc[j * sc_stride], j = 0..15).
inline void put_q6k_half(__m256i ql0, __m256i ql1, __m256i qh, float d, const int8_t* sc, int sc_stride, int64_t sb,
                         int h, int8_t* w, float* dw, int32_t* corr) {
    const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
    const __m256i v[4] = {
        _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45)),
        _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, bits45)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45)),
    };
    for (int k = 0; k < 4; ++k) {
        const int j = 4 * h + k;  // 32-element block of the super-block: groups 2j, 2j+1
        const __m256i s = _mm256_sub_epi8(v[k], k32);
        const int64_t g = 16 * sb + 2 * j;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(w + 16 * g), s);
        int32_t lo, hi;
        sum_s8_halves(s, &lo, &hi);
        corr[g] = 128 * lo, corr[g + 1] = 128 * hi;
        dw[g] = d * sc[2 * j * sc_stride], dw[g + 1] = d * sc[(2 * j + 1) * sc_stride];
    }
}

// Row rr (of 16) of a packed Q6_K group (rows16.h), read in place: its quads lie 64 bytes apart, 8 to a gather.
void unpack_q6k_rows16_row(const uint8_t* group, int rr, int64_t cols, int8_t* w, float* dw, int32_t* corr) {
    const __m256i quads = _mm256_setr_epi32(0, 64, 128, 192, 256, 320, 384, 448);
    auto gather8 = [&](const uint8_t* first) {
        return _mm256_i32gather_epi32(reinterpret_cast<const int*>(first + 4 * rr), quads, 1);
    };
    for (int64_t sb = 0; sb < cols / 256; ++sb) {
        const uint8_t* blk = group + sb * kQ6kRows16Block;
        const int8_t* sc = reinterpret_cast<const int8_t*>(blk + kQ6kOffSc + rr);
        for (int h = 0; h < 2; ++h)
            put_q6k_half(gather8(blk + kQ6kOffQl + 64 * 16 * h), gather8(blk + kQ6kOffQl + 64 * (16 * h + 8)),
                         gather8(blk + kQ6kOffQh + 64 * 8 * h), f16(blk + kQ6kOffD + 2 * rr), sc, 16, sb, h, w, dw, corr);
    }
}

// The 16 rows of a packed Q8_0 group (rows16.h) as unpack_row would give them: per block, the 8 registers
// of quads (row r at dword r) transposed to rows (two per register) by three rounds of permutes, where a
// gather per row and block had made q8_0 prefill ~25% slower than on the file layout.
void unpack_q8_0_rows16_group(const uint8_t* group, int64_t cols, int8_t* w, float* dw, int32_t* corr) {
    const int64_t groups = cols / 32;
    // Round 1: dwords of quads k, k + 1 interleaved: lo = rows 0-7, hi = rows 8-15.
    const __m512i pair_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i pair_hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    // Round 2: qwords (a row's quads k, k + 1) of two such registers: lo = their rows 0-3, hi = rows 4-7.
    const __m512i quad_lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), quad_hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    const __m512i flip = _mm512_set1_epi8(char(0x80));
    for (int64_t b = 0; b < groups; ++b) {
        const uint8_t* blk = group + b * kQ8Rows16Block;
        __m512i z[8];
        for (int k = 0; k < 8; ++k) z[k] = _mm512_xor_si512(_mm512_loadu_si512(blk + kQ8OffQs + 64 * k), flip);
        __m512i a[4][2];  // quads 2m, 2m + 1; [0] rows 0-7, [1] rows 8-15
        for (int m = 0; m < 4; ++m) {
            a[m][0] = _mm512_permutex2var_epi32(z[2 * m], pair_lo, z[2 * m + 1]);
            a[m][1] = _mm512_permutex2var_epi32(z[2 * m], pair_hi, z[2 * m + 1]);
        }
        for (int h = 0; h < 2; ++h)      // rows 8h .. 8h + 7
            for (int q = 0; q < 2; ++q) {  // rows 8h + 4q .. + 3
                const __m512i& idx = q ? quad_hi : quad_lo;
                const __m512i q03 = _mm512_permutex2var_epi64(a[0][h], idx, a[1][h]);  // quads 0-3 of 4 rows
                const __m512i q47 = _mm512_permutex2var_epi64(a[2][h], idx, a[3][h]);  // quads 4-7
                // Round 3: 128-bit halves: a row's quads 0-3 then 4-7, two rows per register.
                const __m512i rows01 = _mm512_shuffle_i64x2(q03, q47, 0x44), rows23 = _mm512_shuffle_i64x2(q03, q47, 0xEE);
                const int base = 8 * h + 4 * q;
                const __m512i two[2] = {rows01, rows23};
                for (int t = 0; t < 2; ++t) {
                    // 128-bit lanes of `two[t]`: row base + 2t: q03 lane 0 | q47 lane 0; row base + 2t + 1: lane 1s.
                    const __m512i ordered = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 4, 5, 2, 3, 6, 7), two[t]);
                    for (int u = 0; u < 2; ++u) {
                        const int i = base + 2 * t + u;
                        const __m256i v = u ? _mm512_extracti64x4_epi64(ordered, 1) : _mm512_castsi512_si256(ordered);
                        put32(w + i * cols, dw + i * groups, corr + i * groups, b, v, f16(blk + kQ8OffD + 2 * i));
                    }
                }
            }
    }
}

// The panel of a packed matrix: its 16 rows are one group (a packed matrix's rows are a multiple of 16).
static_assert(kPanel == kRows16, "a panel of a packed matrix is one group of rows16.h");
// groups: a row's scale groups in the panel (QuantLayout::group: 16 elements for Q6_K, 32 for Q4_K and Q8_0).
void unpack_group_rows16(const Matrix& W, int64_t r0, int64_t groups, const QPanel& P) {
    const int64_t cols = W.cols;
    const uint8_t* group = W.data + r0 * int64_t(W.row_bytes);
    if (W.type == DType::Q8_0) return unpack_q8_0_rows16_group(group, cols, P.w, P.dw, P.corr);
    if (W.type == DType::Q6_K) {
        for (int rr = 0; rr < kRows16; ++rr)
            unpack_q6k_rows16_row(group, rr, cols, P.w + rr * cols, P.dw + rr * groups, P.corr + rr * groups);
        return;
    }
    for (int rr = 0; rr < kRows16; ++rr)
        unpack_q4k_rows16_row(group, rr, cols, P.w + rr * cols, P.dw + rr * groups, P.mw + rr * groups);
}

// Unpacks one stored row of `cols` elements into int8 + group scales (+ mins): w = dw * q + mw per group.
void unpack_row(DType t, const uint8_t* row, int64_t cols, int8_t* w, float* dw, float* mw, int32_t* corr) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    switch (t) {
        case DType::Q8_0:
            for (int64_t b = 0; b < cols / 32; ++b) {
                const uint8_t* p = row + 34 * b;
                put32(w, dw, corr, b, load32(p + 2), f16(p));
            }
            return;
        case DType::Q4_0:
            for (int64_t b = 0; b < cols / 32; ++b) {
                const uint8_t* p = row + 18 * b;
                put32(w, dw, corr, b, _mm256_sub_epi8(nibbles32(p + 2), _mm256_set1_epi8(8)), f16(p));
            }
            return;
        case DType::Q4_1:
            for (int64_t b = 0; b < cols / 32; ++b) {
                const uint8_t* p = row + 20 * b;
                put32(w, dw, nullptr, b, nibbles32(p + 4), f16(p));
                mw[b] = f16(p + 2);
            }
            return;
        case DType::Q4_K:
        case DType::Q5_K: {
            const bool q5 = t == DType::Q5_K;
            const int bytes = q5 ? 176 : 144, qs = q5 ? qb::kQ5_K_Qs : qb::kQ4_K_Qs;
            for (int64_t sb = 0; sb < cols / 256; ++sb) {
                const uint8_t* p = row + bytes * sb;
                const float d = f16(p), dmin = f16(p + 2);
                const __m256i qh = q5 ? load32(p + qb::kQ5_K_Qh) : _mm256_setzero_si256();
                const __m256i one = _mm256_set1_epi8(1);
                for (int c = 0; c < 4; ++c) {
                    const __m256i q = load32(p + qs + 32 * c);
                    __m256i lo = _mm256_and_si256(q, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
                    if (q5) {  // bit 2c of qh[l]: sub-block 2c's fifth bit; bit 2c+1: sub-block 2c+1's
                        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4));
                        hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4));
                    }
                    uint8_t sc, mn;
                    const int64_t g = 8 * sb + 2 * c;
                    qb::scale_min_k4(2 * c, p + 4, &sc, &mn);
                    put32(w, dw, nullptr, g, lo, d * sc);
                    mw[g] = -dmin * mn;
                    qb::scale_min_k4(2 * c + 1, p + 4, &sc, &mn);
                    put32(w, dw, nullptr, g + 1, hi, d * sc);
                    mw[g + 1] = -dmin * mn;
                }
            }
            return;
        }
        case DType::Q6_K:
            for (int64_t sb = 0; sb < cols / 256; ++sb) {
                const uint8_t* p = row + 210 * sb;
                const int8_t* sc = reinterpret_cast<const int8_t*>(p + qb::kQ6_K_Sc);
                for (int h = 0; h < 2; ++h)
                    put_q6k_half(load32(p + qb::kQ6_K_Ql + 64 * h), load32(p + qb::kQ6_K_Ql + 64 * h + 32),
                                 load32(p + qb::kQ6_K_Qh + 32 * h), f16(p + qb::kQ6_K_D), sc, 1, sb, h, w, dw, corr);
            }
            return;
        default: return;
    }
}

// The int8 micro-kernel: rows r[0..3] of the panel x token vectors tv, tv+1 (NV of them), over all
// groups. acc[v][i] (16 tokens of row i) += dx * (dw * (I - corr) ) + mw * dx * sx per group, where I is
// the group's integer dot of (q + 128) with the weights; with a min, I is the dot of q with the unsigned
// weights and there is no corr.
template <int G, bool kMin, int NV>
void qkernel(const QPanel& P, const int r[kRows], int64_t cols, const QActs& X, int64_t tv, float* out /*[NV][kRows][16]*/) {
    const int64_t groups = cols / G, quads = cols / 4;
    __m512 acc[NV][kRows];
    for (int v = 0; v < NV; ++v)
        for (int i = 0; i < kRows; ++i) acc[v][i] = _mm512_setzero_ps();
    const int8_t* w[kRows];
    const float *dw[kRows], *mw[kRows];
    const int32_t* corr[kRows];
    for (int i = 0; i < kRows; ++i) {
        w[i] = P.w + int64_t(r[i]) * cols;
        dw[i] = P.dw + int64_t(r[i]) * groups;
        mw[i] = P.mw + int64_t(r[i]) * groups;
        corr[i] = P.corr + int64_t(r[i]) * groups;
    }
    const uint8_t* xu[NV];
    const float *xd[NV], *xds[NV];
    for (int v = 0; v < NV; ++v) {
        xu[v] = X.u + (tv + v) * quads * 64;
        xd[v] = X.d + (tv + v) * (cols / 32) * 16;
        xds[v] = X.ds + (tv + v) * (cols / 32) * 16;
    }
    for (int64_t g = 0; g < groups; ++g) {
        __m512i I[NV][kRows];
        for (int v = 0; v < NV; ++v)
            for (int i = 0; i < kRows; ++i) I[v][i] = _mm512_setzero_si512();
        for (int j = 0; j < G / 4; ++j) {
            const int64_t quad = g * (G / 4) + j;
            __m512i xv[NV];
            for (int v = 0; v < NV; ++v) xv[v] = _mm512_loadu_si512(xu[v] + quad * 64);
            for (int i = 0; i < kRows; ++i) {
                int32_t wq;
                std::memcpy(&wq, w[i] + 4 * quad, 4);
                const __m512i wb = _mm512_set1_epi32(wq);
                for (int v = 0; v < NV; ++v) {
                    if constexpr (kMin) I[v][i] = _mm512_dpbusd_epi32(I[v][i], wb, xv[v]);
                    else I[v][i] = _mm512_dpbusd_epi32(I[v][i], xv[v], wb);
                }
            }
        }
        const int64_t b = g * G / 32;  // the activation block holding this group
        for (int v = 0; v < NV; ++v) {
            const __m512 dx = _mm512_loadu_ps(xd[v] + b * 16);
            for (int i = 0; i < kRows; ++i) {
                __m512i isum = I[v][i];
                if constexpr (!kMin) isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(corr[i][g]));
                const __m512 f = _mm512_cvtepi32_ps(isum);
                acc[v][i] = _mm512_fmadd_ps(f, _mm512_mul_ps(dx, _mm512_set1_ps(dw[i][g])), acc[v][i]);
                if (kMin) acc[v][i] = _mm512_fmadd_ps(_mm512_set1_ps(mw[i][g]), _mm512_loadu_ps(xds[v] + b * 16), acc[v][i]);
            }
        }
    }
    for (int v = 0; v < NV; ++v)
        for (int i = 0; i < kRows; ++i) _mm512_storeu_ps(out + (v * kRows + i) * 16, acc[v][i]);
}

using QKernel = void (*)(const QPanel&, const int*, int64_t, const QActs&, int64_t, float*);
template <int NV>
QKernel pick_qkernel(const QuantLayout& l) {
    if (l.group == 16) return qkernel<16, false, NV>;
    return l.has_min ? qkernel<32, true, NV> : qkernel<32, false, NV>;
}

// The f32 micro-kernel: panel rows as f32, activations [vec][cols][16].
template <int NV>
void fkernel(const float* panel, const int r[kRows], int64_t cols, const float* X, int64_t tv, float* out) {
    __m512 acc[NV][kRows];
    for (int v = 0; v < NV; ++v)
        for (int i = 0; i < kRows; ++i) acc[v][i] = _mm512_setzero_ps();
    const float* w[kRows];
    for (int i = 0; i < kRows; ++i) w[i] = panel + int64_t(r[i]) * cols;
    const float* xv_base[NV];
    for (int v = 0; v < NV; ++v) xv_base[v] = X + (tv + v) * cols * 16;
    for (int64_t k = 0; k < cols; ++k) {
        __m512 xv[NV];
        for (int v = 0; v < NV; ++v) xv[v] = _mm512_loadu_ps(xv_base[v] + k * 16);
        for (int i = 0; i < kRows; ++i) {
            const __m512 wb = _mm512_set1_ps(w[i][k]);
            for (int v = 0; v < NV; ++v) acc[v][i] = _mm512_fmadd_ps(xv[v], wb, acc[v][i]);
        }
    }
    for (int v = 0; v < NV; ++v)
        for (int i = 0; i < kRows; ++i) _mm512_storeu_ps(out + (v * kRows + i) * 16, acc[v][i]);
}

// The bf16 micro-kernel: the stored bf16 rows (pairs of elements as one 32-bit broadcast), activations as
// bf16 pairs [vec][cols / 2][16][2]. Row i's pair k lies at rows[i] + k x pair_stride: 4 in the file layout,
// 64 in a matrix packed by 16 rows (rows16.h), read in place.
template <int NV>
void bkernel(const uint8_t* const rows[kRows], int64_t pair_stride, int64_t cols, const uint16_t* X, int64_t tv,
             const char* prefetch, int64_t prefetch_lines, float* out) {
    __m512 acc[NV][kRows];
    for (int v = 0; v < NV; ++v)
        for (int i = 0; i < kRows; ++i) acc[v][i] = _mm512_setzero_ps();
    const uint16_t* xv_base[NV];
    for (int v = 0; v < NV; ++v) xv_base[v] = X + (tv + v) * cols * 16;
    // One line of the next panel every `every` pairs, spread over the loop.
    const int64_t every = prefetch_lines > 0 ? std::max<int64_t>(1, cols / 2 / prefetch_lines) : cols;
    int64_t line = 0;
    for (int64_t k2 = 0; k2 < cols / 2; ++k2) {
        if (k2 % every == 0 && line < prefetch_lines) _mm_prefetch(prefetch + 64 * line++, _MM_HINT_T1);
        __m512bh xv[NV];
        for (int v = 0; v < NV; ++v) xv[v] = (__m512bh)_mm512_loadu_si512(xv_base[v] + k2 * 32);
        for (int i = 0; i < kRows; ++i) {
            int32_t pair;
            std::memcpy(&pair, rows[i] + pair_stride * k2, 4);
            const __m512bh wb = (__m512bh)_mm512_set1_epi32(pair);
            for (int v = 0; v < NV; ++v) acc[v][i] = _mm512_dpbf16_ps(acc[v][i], xv[v], wb);
        }
    }
    for (; line < prefetch_lines; ++line) _mm_prefetch(prefetch + 64 * line, _MM_HINT_T1);
    for (int v = 0; v < NV; ++v)
        for (int i = 0; i < kRows; ++i) _mm512_storeu_ps(out + (v * kRows + i) * 16, acc[v][i]);
}

// Row of `type` -> f32 (F32, F16, BF16), vectorised.
void to_f32(DType t, const uint8_t* row, int64_t cols, float* out) {
    int64_t i = 0;
    if (t == DType::F32) {
        std::memcpy(out, row, cols * sizeof(float));
        return;
    }
    for (; i + 16 <= cols; i += 16) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i));
        const __m512 f = t == DType::F16 ? _mm512_cvtph_ps(h)
                                         : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        _mm512_storeu_ps(out + i, f);
    }
    for (; i < cols; ++i) {
        const uint16_t h = qb::load_u16(row + 2 * i);
        out[i] = t == DType::F16 ? qb::f16_to_f32_fast(h) : qb::bf16_to_f32_fast(h);
    }
}


// The next panel's stored rows are fetched into L2 while this panel computes, a slice before each
// micro-kernel call: unpacking otherwise waited on memory (half the GEMM's time at 64 tokens, perf), the
// hardware prefetcher does not run ahead across the compute between panels.
struct PanelPrefetch {
    const uint8_t* next = nullptr;
    int64_t bytes = 0, done = 0;
    void slice(int64_t calls_left) {
        const char* p;
        const int64_t lines = take(calls_left, &p);
        for (int64_t l = 0; l < lines; ++l) _mm_prefetch(p + 64 * l, _MM_HINT_T1);
    }
    // This call's share of the lines, for a kernel that spreads them over its loop (a burst of a few
    // hundred prefetches stalls on the full miss queue: 4.6% of a bf16 GEMM's samples on the burst).
    int64_t take(int64_t calls_left, const char** p) {
        if (!next || done >= bytes) return 0;
        const int64_t upto = calls_left <= 1 ? bytes : done + (bytes - done) / calls_left;
        *p = reinterpret_cast<const char*>(next + done);
        const int64_t lines = (upto - done + 63) / 64;
        done += 64 * lines;
        return lines;
    }
};
PanelPrefetch next_panel(const Matrix& W, int64_t p, int64_t p1) {
    PanelPrefetch f;
    if (p + 1 < p1) {
        const int64_t r0 = (p + 1) * kPanel, rows = std::min<int64_t>(kPanel, W.rows - r0);
        f.next = W.row(r0);
        f.bytes = rows * int64_t(W.row_bytes);
    }
    return f;
}

// Writes a micro-kernel's tile out: tokens tv*16 + lane (those < n) x the valid rows.
// A full tile (4 consecutive rows, 16 tokens per vector) is transposed in registers and written as one
// 16-byte store per token: the scalar loop's 64 stores per vector, each to another cache line of y, were
// half the time of the GEMM outside its micro-kernel.
template <int NV>
void store_tile(const float* tile, int64_t tv, int32_t n, const int64_t row0[kRows], int valid_rows, int64_t out_cols,
                float* y) {
    static_assert(kRows == 4 && kLanes == 16, "the transpose below is 4 rows x 16 tokens");
    if (valid_rows == kRows && row0[3] == row0[0] + 3 && (tv + NV) * kLanes <= n) {
        for (int v = 0; v < NV; ++v) {
            const float* rows = tile + v * kRows * 16;
            const __m512 a = _mm512_loadu_ps(rows), b = _mm512_loadu_ps(rows + 16);
            const __m512 c = _mm512_loadu_ps(rows + 32), d = _mm512_loadu_ps(rows + 48);
            // Per 128-bit lane j (tokens 4j..4j+3): t0 = a0 b0 a1 b1, t1 = a2 b2 a3 b3, t2/t3 the same of c, d.
            const __m512 t0 = _mm512_unpacklo_ps(a, b), t1 = _mm512_unpackhi_ps(a, b);
            const __m512 t2 = _mm512_unpacklo_ps(c, d), t3 = _mm512_unpackhi_ps(c, d);
            // u[k]'s lane j: token 4j+k's four rows.
            const __m512 u[4] = {_mm512_shuffle_ps(t0, t2, 0x44), _mm512_shuffle_ps(t0, t2, 0xEE),
                                 _mm512_shuffle_ps(t1, t3, 0x44), _mm512_shuffle_ps(t1, t3, 0xEE)};
            float* out = y + (tv + v) * kLanes * out_cols + row0[0];
            for (int k = 0; k < 4; ++k) {
                _mm_storeu_ps(out + (0 + k) * out_cols, _mm512_castps512_ps128(u[k]));
                _mm_storeu_ps(out + (4 + k) * out_cols, _mm512_extractf32x4_ps(u[k], 1));
                _mm_storeu_ps(out + (8 + k) * out_cols, _mm512_extractf32x4_ps(u[k], 2));
                _mm_storeu_ps(out + (12 + k) * out_cols, _mm512_extractf32x4_ps(u[k], 3));
            }
        }
        return;
    }
    for (int v = 0; v < NV; ++v)
        for (int lane = 0; lane < kLanes; ++lane) {
            const int64_t t = (tv + v) * kLanes + lane;
            if (t >= n) return;
            for (int i = 0; i < valid_rows; ++i) y[t * out_cols + row0[i]] = tile[(v * kRows + i) * 16 + lane];
        }
}

// The activations in the quantised micro-kernels' layout: per token vector v (16 tokens), quad j of every
// token as one dword of a 64-byte line, [v][quad][16 x 4 bytes] (each byte XOR `flip`), and per 32-column
// block the 16 tokens' d and d x s, [v][block][16]; tokens from n up to a whole vector are zeros (flip bytes).
// Made by every thread of the pool over its own range of blocks, for all tokens (on the caller alone, as it
// was, the other thread waited: the Q8_0 and Q4_K GEMMs are ~3% faster at 64 and 512 tokens this way,
// bench_gemm_crossover). The quantisation is the decode path's (quantize_act_rows over a range of whole
// blocks of a row gives the bytes it gives over the row).
void quant_acts_transposed(const float* x, int32_t n, int64_t cols, uint32_t flip, uint8_t* xu, float* xd, float* xds) {
    const int64_t nb = cols / 32, quads = cols / 4, vecs = (n + kLanes - 1) / kLanes;
    parallel_for(nb, [&](int64_t b0, int64_t b1) {
        const int64_t blocks = b1 - b0;
        thread_local std::vector<int8_t> q;
        thread_local std::vector<float> d;
        thread_local std::vector<int32_t> sums;
        q.resize(size_t(blocks) * 32);
        d.resize(size_t(blocks));
        sums.resize(size_t(blocks));
        for (int64_t t = 0; t < vecs * kLanes; ++t) {
            const int64_t v = t / kLanes, lane = t % kLanes;
            if (t < n) {
                quantize_act_rows(x + t * cols + 32 * b0, 1, 32 * blocks, q.data(), d.data(), sums.data());
            } else {
                std::fill(q.begin(), q.end(), int8_t(0));
                std::fill(d.begin(), d.end(), 0.f);
                std::fill(sums.begin(), sums.end(), 0);
            }
            uint8_t* dst = xu + (v * quads + 8 * b0) * 64 + lane * 4;
            for (int64_t j = 0; j < 8 * blocks; ++j) {
                uint32_t word;
                std::memcpy(&word, q.data() + 4 * j, 4);
                word ^= flip;
                std::memcpy(dst + j * 64, &word, 4);
            }
            for (int64_t b = 0; b < blocks; ++b) {
                xd[(v * nb + b0 + b) * 16 + lane] = d[b];
                xds[(v * nb + b0 + b) * 16 + lane] = d[b] * float(sums[b]);
            }
        }
    });
}

// The activations in the bf16 micro-kernel's layout: [v][pair][16 tokens x 2 bf16], tokens from n up to a
// whole vector zeros; every thread over its own range of 16-pair chunks, for all tokens, as for the
// quantised layout. Each chunk of 32 floats is rounded by to_bf16's vector path as a whole row's was, the
// row's tail (cols % 32) by its scalar path as before.
void bf16_acts_transposed(const float* x, int32_t n, int64_t cols, uint16_t* xb) {
    const int64_t pairs = cols / 2, vecs = (n + kLanes - 1) / kLanes, chunks = (pairs + 15) / 16;
    parallel_for(chunks, [&](int64_t c0, int64_t c1) {
        const int64_t k0 = 16 * c0, k1 = std::min(pairs, 16 * c1);
        uint16_t row[32];
        for (int64_t t = 0; t < vecs * kLanes; ++t) {
            uint16_t* dst = xb + (t / kLanes) * cols * 16 + (t % kLanes) * 2;
            for (int64_t k = k0; k < k1; k += 16) {
                const int64_t m = std::min<int64_t>(16, k1 - k);
                if (t < n) to_bf16(x + t * cols + 2 * k, 2 * m, row);
                else std::fill(row, row + 2 * m, uint16_t(0));
                for (int64_t i = 0; i < m; ++i) std::memcpy(dst + (k + i) * 32, row + 2 * i, 4);
            }
        }
    });
}

void gemm_quant(const float* x, int32_t n, const Matrix& W, float* y, const QuantLayout& L) {
    const int64_t cols = W.cols, out_rows = W.rows, groups = cols / L.group, nb = cols / 32, quads = cols / 4;
    const int64_t vecs = (n + kLanes - 1) / kLanes;
    // The activations, quantised as the decode path does, then token-transposed (per call, shared).
    thread_local std::vector<float> xd, xds;
    thread_local std::vector<uint8_t> xu;
    const uint32_t flip = L.has_min ? 0u : 0x80808080u;  // q + 128 in every byte, or q as it is
    xu.resize(size_t(vecs) * quads * 64);
    xd.resize(size_t(vecs) * nb * 16);
    xds.resize(size_t(vecs) * nb * 16);
    quant_acts_transposed(x, n, cols, flip, xu.data(), xd.data(), xds.data());
    const QActs X{xu.data(), xd.data(), xds.data()};  // the caller's buffers, for every pool thread
    const QKernel k2 = pick_qkernel<2>(L), k1 = pick_qkernel<1>(L);
    const int64_t panels = (out_rows + kPanel - 1) / kPanel;
    parallel_for_stealing(panels, [&](int64_t p0, int64_t p1) {
        thread_local std::vector<int8_t> pw;
        thread_local std::vector<float> pdw, pmw;
        thread_local std::vector<int32_t> pcorr;
        pw.resize(size_t(kPanel) * cols);
        pdw.resize(size_t(kPanel) * groups);
        pmw.resize(size_t(kPanel) * groups);
        pcorr.resize(size_t(kPanel) * groups);
        const QPanel P{pw.data(), pdw.data(), pmw.data(), pcorr.data()};
        alignas(64) float tile[kTokVecs * kRows * 16];
        for (int64_t p = p0; p < p1; ++p) {
            const int64_t r0 = p * kPanel, nrows = std::min<int64_t>(kPanel, out_rows - r0);
            if (W.packing == Packing::kRows16)
                unpack_group_rows16(W, r0, groups, P);
            else
                for (int64_t i = 0; i < nrows; ++i)
                    unpack_row(W.type, W.row(r0 + i), cols, P.w + i * cols, P.dw + i * groups, P.mw + i * groups,
                               P.corr + i * groups);
            PanelPrefetch pf = next_panel(W, p, p1);
            int64_t calls_left = ((vecs + kTokVecs - 1) / kTokVecs) * ((nrows + kRows - 1) / kRows);
            for (int64_t tv = 0; tv < vecs; tv += kTokVecs) {
                const int nv = int(std::min<int64_t>(kTokVecs, vecs - tv));
                for (int64_t i0 = 0; i0 < nrows; i0 += kRows) {
                    pf.slice(calls_left--);
                    const int valid = int(std::min<int64_t>(kRows, nrows - i0));
                    int r[kRows];
                    int64_t row0[kRows];
                    for (int i = 0; i < kRows; ++i) r[i] = int(i0 + std::min(i, valid - 1)), row0[i] = r0 + r[i];
                    if (nv == 2) {
                        k2(P, r, cols, X, tv, tile);
                        store_tile<2>(tile, tv, n, row0, valid, out_rows, y);
                    } else {
                        k1(P, r, cols, X, tv, tile);
                        store_tile<1>(tile, tv, n, row0, valid, out_rows, y);
                    }
                }
            }
        }
    }, 1);
}

void gemm_float(const float* x, int32_t n, const Matrix& W, float* y) {
    const int64_t cols = W.cols, out_rows = W.rows;
    const int64_t vecs = (n + kLanes - 1) / kLanes;
    const bool bf16 = W.type == DType::BF16 && has_avx512_bf16() && cols % 2 == 0;
    // A packed matrix (BF16 only: packing needs AVX512_BF16) is read in place; a panel is one group.
    const bool packed = W.packing == Packing::kRows16;
    // Activations token-transposed: f32 [vec][cols][16], or bf16 pairs [vec][cols/2][16][2].
    thread_local std::vector<float> xf;
    thread_local std::vector<uint16_t> xb;
    if (bf16) {
        xb.resize(size_t(vecs) * cols * 16);
        bf16_acts_transposed(x, n, cols, xb.data());
    } else {
        xf.assign(size_t(vecs) * cols * 16, 0.f);
        for (int32_t t = 0; t < n; ++t) {
            const int64_t v = t / kLanes, lane = t % kLanes;
            const float* xt = x + int64_t(t) * cols;
            float* dst = xf.data() + v * cols * 16 + lane;
            for (int64_t k = 0; k < cols; ++k) dst[k * 16] = xt[k];
        }
    }
    // The caller's thread_local buffers, read by every pool thread (inside the lambda the names would
    // refer to each thread's own).
    const float* XF = xf.data();
    const uint16_t* XB = xb.data();
    const int64_t panels = (out_rows + kPanel - 1) / kPanel;
    parallel_for_stealing(panels, [&](int64_t p0, int64_t p1) {
        thread_local std::vector<float> pf;
        if (!bf16) pf.resize(size_t(kPanel) * cols);
        alignas(64) float tile[kTokVecsBf16 * kRows * 16];
        for (int64_t p = p0; p < p1; ++p) {
            const int64_t r0 = p * kPanel, nrows = std::min<int64_t>(kPanel, out_rows - r0);
            if (!bf16)
                for (int64_t i = 0; i < nrows; ++i) to_f32(W.type, W.row(r0 + i), cols, pf.data() + i * cols);
            PanelPrefetch ahead = next_panel(W, p, p1);
            const int64_t tok_vecs = bf16 ? kTokVecsBf16 : kTokVecs;
            int64_t calls_left = ((vecs + tok_vecs - 1) / tok_vecs) * ((nrows + kRows - 1) / kRows);
            for (int64_t tv = 0; tv < vecs; tv += tok_vecs) {
                const int nv = int(std::min<int64_t>(tok_vecs, vecs - tv));
                for (int64_t i0 = 0; i0 < nrows; i0 += kRows) {
                    const char* pf_at = nullptr;
                    int64_t pf_lines = 0;
                    if (bf16) pf_lines = ahead.take(calls_left--, &pf_at);
                    else ahead.slice(calls_left--);
                    const int valid = int(std::min<int64_t>(kRows, nrows - i0));
                    int r[kRows];
                    int64_t row0[kRows];
                    const uint8_t* rows[kRows];
                    for (int i = 0; i < kRows; ++i) {
                        r[i] = int(i0 + std::min(i, valid - 1));
                        row0[i] = r0 + r[i];
                        rows[i] = packed ? W.data + r0 * int64_t(W.row_bytes) + 4 * r[i] : W.row(row0[i]);
                    }
                    if (bf16) {
                        const int64_t stride = packed ? 4 * kRows16 : 4;
                        switch (nv) {
                            case 4: bkernel<4>(rows, stride, cols, XB, tv, pf_at, pf_lines, tile); break;
                            case 3: bkernel<3>(rows, stride, cols, XB, tv, pf_at, pf_lines, tile); break;
                            case 2: bkernel<2>(rows, stride, cols, XB, tv, pf_at, pf_lines, tile); break;
                            default: bkernel<1>(rows, stride, cols, XB, tv, pf_at, pf_lines, tile); break;
                        }
                    } else {
                        if (nv == 2) fkernel<2>(pf.data(), r, cols, XF, tv, tile);
                        else fkernel<1>(pf.data(), r, cols, XF, tv, tile);
                    }
                    switch (nv) {
                        case 4: store_tile<4>(tile, tv, n, row0, valid, out_rows, y); break;
                        case 3: store_tile<3>(tile, tv, n, row0, valid, out_rows, y); break;
                        case 2: store_tile<2>(tile, tv, n, row0, valid, out_rows, y); break;
                        default: store_tile<1>(tile, tv, n, row0, valid, out_rows, y); break;
                    }
                }
            }
        }
    }, 1);
}

}  // namespace
#pragma GCC pop_options

bool has_avx512_bf16() {
    static const bool v = [] {
        __builtin_cpu_init();
        return best_quant_isa() == QuantIsa::kAvx512Vnni && __builtin_cpu_supports("avx512bf16");
    }();
    return v;
}

// f32 pairs -> bf16 pairs, round to nearest even (vcvtne2ps2bf16).
__attribute__((target("avx512f,avx512bf16"))) void to_bf16(const float* x, int64_t n, uint16_t* out) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        _mm512_storeu_si512(out + i, (__m512i)b);
    }
    for (; i < n; ++i) {  // scalar round to nearest even (finite inputs)
        uint32_t u;
        std::memcpy(&u, x + i, 4);
        out[i] = uint16_t((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
    }
}

bool gemm_supported(DType type) {
    QuantLayout l;
    if (quant_layout(type, &l)) return best_quant_isa() == QuantIsa::kAvx512Vnni;
    if (type == DType::F32 || type == DType::F16 || type == DType::BF16)
        return best_quant_isa() == QuantIsa::kAvx512Vnni;  // AVX-512F/BW/VL come with it
    return false;
}

int32_t gemm_min_tokens(DType type) {
    QuantLayout l;
    return quant_layout(type, &l) ? kGemmMinTokensQuant : kGemmMinTokensFloat;
}

void gemm(const float* x, int32_t n, const Matrix& W, float* y) {
    QuantLayout l;
    if (quant_layout(W.type, &l)) gemm_quant(x, n, W, y, l);
    else gemm_float(x, n, W, y);
}

}  // namespace dg::cpu
