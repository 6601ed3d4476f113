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

float dot16(const float* a, const float* b, int64_t hd) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t j = 0;
    for (; j + 64 <= hd; j += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 16), _mm512_loadu_ps(b + j + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 32), _mm512_loadu_ps(b + j + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 48), _mm512_loadu_ps(b + j + 48), s3);
    }
    for (; j < hd; j += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), s0);
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

// out[j0, j0 + 16 NZ) = sum_p e_p V_p[j0 ...], the accumulators kept in registers over all keys.
template <int NZ>
void accumulate_v(const float* e, const float* V, int64_t n_keys, int64_t hd, int64_t j0, float* out) {
    __m512 acc[NZ];
    for (int z = 0; z < NZ; ++z) acc[z] = _mm512_setzero_ps();
    for (int64_t p = 0; p < n_keys; ++p) {
        const __m512 ep = _mm512_set1_ps(e[p]);
        const float* v = V + p * hd + j0;
        for (int z = 0; z < NZ; ++z) acc[z] = _mm512_fmadd_ps(ep, _mm512_loadu_ps(v + 16 * z), acc[z]);
    }
    for (int z = 0; z < NZ; ++z) _mm512_storeu_ps(out + j0 + 16 * z, acc[z]);
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

void attend_row_avx512(const float* q, const float* K, const float* V, int64_t n_keys, int64_t hd, float scale,
                       float* scores, float* out) {
    float mx = -INFINITY;
    for (int64_t p = 0; p < n_keys; ++p) {
        scores[p] = dot16(q, K + p * hd, hd) * scale;
        mx = std::max(mx, scores[p]);
    }
    const float sum = softmax_numerators(scores, n_keys, mx);
    for (int64_t j0 = 0; j0 < hd;) {
        switch (std::min<int64_t>(8, (hd - j0) / 16)) {
            case 8: accumulate_v<8>(scores, V, n_keys, hd, j0, out), j0 += 128; break;
            case 4: case 5: case 6: case 7: accumulate_v<4>(scores, V, n_keys, hd, j0, out), j0 += 64; break;
            case 2: case 3: accumulate_v<2>(scores, V, n_keys, hd, j0, out), j0 += 32; break;
            default: accumulate_v<1>(scores, V, n_keys, hd, j0, out), j0 += 16; break;
        }
    }
    scale_out(out, hd, sum);
}

#pragma GCC pop_options

}  // namespace

AttendRowFn attend_row_fast(int64_t hd) {
    // A CPU with AVX-512 VNNI (what best_quant_isa() reports) has AVX-512F/BW/DQ/VL.
    if (hd % 16 != 0 || best_quant_isa() != QuantIsa::kAvx512Vnni) return nullptr;
    return attend_row_avx512;
}

AttendCachedRowFn attend_cached_row_fast(DType kv_type, int64_t hd) {
    if (!attend_row_fast(hd)) return nullptr;
    switch (kv_type) {
        case DType::F32: return attend_cached_row_avx512<DType::F32>;
        case DType::F16: return attend_cached_row_avx512<DType::F16>;
        case DType::BF16: return attend_cached_row_avx512<DType::BF16>;
        default: return nullptr;
    }
}

}  // namespace dg::cpu
