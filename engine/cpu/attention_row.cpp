// The AVX-512 attention row of attention_row.h.
#include "engine/cpu/attention_row.h"

#include <immintrin.h>

#include <cmath>

#include "engine/cpu/exp_avx512.h"
#include "engine/cpu/quant_dot.h"

namespace dg::cpu {
namespace {

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq")

// 16 elements of a cache row of type T at element j, as f32.
template <DType T>
inline __m512 load_row16(const uint8_t* row, int64_t j) {
    if constexpr (T == DType::F32) return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + j);
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * j));
    if constexpr (T == DType::F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

template <DType T>
float dot16_row(const float* q, const uint8_t* row, int64_t hd) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int64_t j = 0;
    for (; j + 32 <= hd; j += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j), load_row16<T>(row, j), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j + 16), load_row16<T>(row, j + 16), s1);
    }
    for (; j < hd; j += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j), load_row16<T>(row, j), s0);
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

template <DType T, int NZ>
void accumulate_v_rows(const float* e, const uint8_t* const* v_rows, int64_t n_keys, int64_t j0, float* out) {
    __m512 acc[NZ];
    for (int z = 0; z < NZ; ++z) acc[z] = _mm512_setzero_ps();
    for (int64_t p = 0; p < n_keys; ++p) {
        const __m512 ep = _mm512_set1_ps(e[p]);
        for (int z = 0; z < NZ; ++z) acc[z] = _mm512_fmadd_ps(ep, load_row16<T>(v_rows[p], j0 + 16 * z), acc[z]);
    }
    for (int z = 0; z < NZ; ++z) _mm512_storeu_ps(out + j0 + 16 * z, acc[z]);
}

// scores[0, n) <- exp(scores - max); returns their sum.
float softmax_numerators(float* scores, int64_t n_keys, float mx) {
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t p = 0; p < n_keys; p += 16) {
        const __mmask16 m = n_keys - p >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n_keys - p)) - 1);
        const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, scores + p), vmx));
        _mm512_mask_storeu_ps(scores + p, m, e);
        vsum = _mm512_add_ps(vsum, _mm512_maskz_mov_ps(m, e));
    }
    return _mm512_reduce_add_ps(vsum);
}

void scale_out(float* out, int64_t hd, float sum) {
    const __m512 inv = _mm512_set1_ps(1.f / sum);
    for (int64_t j = 0; j < hd; j += 16) _mm512_storeu_ps(out + j, _mm512_mul_ps(_mm512_loadu_ps(out + j), inv));
}

template <DType T>
void attend_cached_row_avx512(const float* q, const uint8_t* const* k_rows, const uint8_t* const* v_rows,
                              int64_t n_keys, int64_t hd, float scale, float* scores, float* out) {
    float mx = -INFINITY;
    for (int64_t p = 0; p < n_keys; ++p) {
        scores[p] = dot16_row<T>(q, k_rows[p], hd) * scale;
        mx = std::max(mx, scores[p]);
    }
    const float sum = softmax_numerators(scores, n_keys, mx);
    for (int64_t j0 = 0; j0 < hd;) {
        switch (std::min<int64_t>(8, (hd - j0) / 16)) {
            case 8: accumulate_v_rows<T, 8>(scores, v_rows, n_keys, j0, out), j0 += 128; break;
            case 4: case 5: case 6: case 7: accumulate_v_rows<T, 4>(scores, v_rows, n_keys, j0, out), j0 += 64; break;
            case 2: case 3: accumulate_v_rows<T, 2>(scores, v_rows, n_keys, j0, out), j0 += 32; break;
            default: accumulate_v_rows<T, 1>(scores, v_rows, n_keys, j0, out), j0 += 16; break;
        }
    }
    scale_out(out, hd, sum);
}

// KP keys' scores for the G query rows q[G][hd]: each 16-float piece of a key is loaded once for all G
// rows. Per (key, row) the sums run in the order of the one-row kernel this replaced (four accumulators,
// one per 16-float piece of each 64, a tail piece into the first, ((a0 + a1) + (a2 + a3)) reduced), so a
// prefill's attention gives the bits it gave before grouping: the exact-resume tests' greedy streams on
// the tiny model (docs/reliability.md) pass through near-ties that a change of summation order flips.
// scores is [G][stride]. Registers: G x KP x 4 accumulators <= 16.
template <int G, int KP>
void score_keys(const float* q, const float* K, int64_t hd, float scale, float* scores, int64_t stride) {
    __m512 a[KP][G][4];
    for (int k = 0; k < KP; ++k)
        for (int g = 0; g < G; ++g) a[k][g][0] = a[k][g][1] = a[k][g][2] = a[k][g][3] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 64 <= hd; j += 64)
        for (int h = 0; h < 4; ++h) {
            __m512 qv[G];
            for (int g = 0; g < G; ++g) qv[g] = _mm512_loadu_ps(q + g * hd + j + 16 * h);
            for (int k = 0; k < KP; ++k) {
                const __m512 kv = _mm512_loadu_ps(K + k * hd + j + 16 * h);
                for (int g = 0; g < G; ++g) a[k][g][h] = _mm512_fmadd_ps(qv[g], kv, a[k][g][h]);
            }
        }
    for (; j < hd; j += 16) {
        __m512 qv[G];
        for (int g = 0; g < G; ++g) qv[g] = _mm512_loadu_ps(q + g * hd + j);
        for (int k = 0; k < KP; ++k) {
            const __m512 kv = _mm512_loadu_ps(K + k * hd + j);
            for (int g = 0; g < G; ++g) a[k][g][0] = _mm512_fmadd_ps(qv[g], kv, a[k][g][0]);
        }
    }
    for (int k = 0; k < KP; ++k)
        for (int g = 0; g < G; ++g)
            scores[g * stride + k] =
                _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[k][g][0], a[k][g][1]), _mm512_add_ps(a[k][g][2], a[k][g][3]))) * scale;
}

// out[g][j0, j0 + 16 NZ) = sum_p e[g][p] V_p[j0 ...] for the G rows: each V piece loaded once for all G.
template <int G, int NZ>
void accumulate_v_group(const float* e, const float* V, int64_t n_keys, int64_t hd, int64_t j0, float* out) {
    __m512 acc[G][NZ];
    for (int g = 0; g < G; ++g)
        for (int z = 0; z < NZ; ++z) acc[g][z] = _mm512_setzero_ps();
    for (int64_t p = 0; p < n_keys; ++p) {
        __m512 v[NZ];
        for (int z = 0; z < NZ; ++z) v[z] = _mm512_loadu_ps(V + p * hd + j0 + 16 * z);
        for (int g = 0; g < G; ++g) {
            const __m512 ep = _mm512_set1_ps(e[g * n_keys + p]);
            for (int z = 0; z < NZ; ++z) acc[g][z] = _mm512_fmadd_ps(ep, v[z], acc[g][z]);
        }
    }
    for (int g = 0; g < G; ++g)
        for (int z = 0; z < NZ; ++z) _mm512_storeu_ps(out + g * hd + j0 + 16 * z, acc[g][z]);
}

// G (1-4) query rows over the same K/V rows. Registers: G x NZ accumulators + NZ V pieces <= 25.
template <int G>
void attend_group_of(const float* q, const float* K, const float* V, int64_t n_keys, int64_t hd, float scale,
                     float* scores, float* out) {
    constexpr int KP = G >= 3 ? 1 : 4 / G;
    int64_t p = 0;
    for (; p + KP <= n_keys; p += KP) score_keys<G, KP>(q, K + p * hd, hd, scale, scores + p, n_keys);
    for (; p < n_keys; ++p) score_keys<G, 1>(q, K + p * hd, hd, scale, scores + p, n_keys);
    float sum[G];
    for (int g = 0; g < G; ++g) {
        float* sg = scores + g * n_keys;
        float mx = -INFINITY;
        for (int64_t k = 0; k < n_keys; ++k) mx = std::max(mx, sg[k]);
        sum[g] = softmax_numerators(sg, n_keys, mx);
    }
    constexpr int kMaxNZ = G <= 2 ? 8 : 4;
    for (int64_t j0 = 0; j0 < hd;) {
        const int64_t left = (hd - j0) / 16;
        if (left >= kMaxNZ) accumulate_v_group<G, kMaxNZ>(scores, V, n_keys, hd, j0, out), j0 += 16 * kMaxNZ;
        else if (left >= 4) accumulate_v_group<G, 4>(scores, V, n_keys, hd, j0, out), j0 += 64;
        else if (left >= 2) accumulate_v_group<G, 2>(scores, V, n_keys, hd, j0, out), j0 += 32;
        else accumulate_v_group<G, 1>(scores, V, n_keys, hd, j0, out), j0 += 16;
    }
    for (int g = 0; g < G; ++g) scale_out(out + g * hd, hd, sum[g]);
}

void attend_group_avx512(const float* q, int G, const float* K, const float* V, int64_t n_keys, int64_t hd,
                         float scale, float* scores, float* out) {
    for (int g0 = 0; g0 < G; g0 += 4) {
        const float* qg = q + g0 * hd;
        float* og = out + g0 * hd;
        switch (std::min(4, G - g0)) {
            case 4: attend_group_of<4>(qg, K, V, n_keys, hd, scale, scores, og); break;
            case 3: attend_group_of<3>(qg, K, V, n_keys, hd, scale, scores, og); break;
            case 2: attend_group_of<2>(qg, K, V, n_keys, hd, scale, scores, og); break;
            default: attend_group_of<1>(qg, K, V, n_keys, hd, scale, scores, og); break;
        }
    }
}

#pragma GCC pop_options

}  // namespace

AttendGroupFn attend_group_fast(int64_t hd) {
    // A CPU with AVX-512 VNNI (what best_quant_isa() reports) has AVX-512F/BW/DQ/VL.
    if (hd % 16 != 0 || best_quant_isa() != QuantIsa::kAvx512Vnni) return nullptr;
    return attend_group_avx512;
}

AttendCachedRowFn attend_cached_row_fast(DType kv_type, int64_t hd) {
    if (!attend_group_fast(hd)) return nullptr;
    switch (kv_type) {
        case DType::F32: return attend_cached_row_avx512<DType::F32>;
        case DType::F16: return attend_cached_row_avx512<DType::F16>;
        case DType::BF16: return attend_cached_row_avx512<DType::BF16>;
        default: return nullptr;
    }
}

}  // namespace dg::cpu
