// The AVX-512 attention row of attention_row.h.
#include "engine/cpu/attention_row.h"

#include <immintrin.h>

#include <algorithm>
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

// v[i] for i < 16 -> one register whose lane i is the sum of v[i]'s 16 lanes: 31 shuffles and adds where
// 16 separate horizontal sums take ~130 instructions (the decode scores of up to 16 (key, row) pairs).
inline __m512 sum_lanes16(const __m512 v[16]) {
    __m512 x[8], y[4];
    for (int k = 0; k < 8; ++k)  // per 128-bit lane: (a0 + a2, b0 + b2, a1 + a3, b1 + b3) of v[2k], v[2k + 1]
        x[k] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]), _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]));
    for (int m = 0; m < 4; ++m)  // per 128-bit lane l: the sums over lane l of v[4m] .. v[4m + 3]
        y[m] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * m], x[2 * m + 1], 0x44), _mm512_shuffle_ps(x[2 * m], x[2 * m + 1], 0xEE));
    // Across the four 128-bit lanes: lane pairs (0 + 2, 1 + 3), then (0 + 1).
    const __m512 s01 = _mm512_add_ps(_mm512_shuffle_f32x4(y[0], y[1], 0x44), _mm512_shuffle_f32x4(y[0], y[1], 0xEE));
    const __m512 s23 = _mm512_add_ps(_mm512_shuffle_f32x4(y[2], y[3], 0x44), _mm512_shuffle_f32x4(y[2], y[3], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_f32x4(s01, s23, 0x88), _mm512_shuffle_f32x4(s01, s23, 0xDD));
}

// scores[g][p] = scale x q_g . K_p for the G (1 to 4) query rows and keys p < n, 16 / G keys at a time:
// each 16-element piece of a key is converted once for all G rows, and the 16 (row, key) sums are reduced
// together (sum_lanes16). Key p's row (of type T) starts at row_at(p): a cache row (decode) or a row of the
// prefill's f32 copy. scores is [G][n].
template <DType T, int G, class RowAt>
void score_keys_of(const float* q, RowAt row_at, int64_t n, int64_t hd, float scale, float* scores) {
    constexpr int KP = 16 / G;
    constexpr int64_t kAhead = 16;  // keys: the history comes from memory, ~16 lines per key of 256 f16 K
    const int64_t row_bytes = hd * (T == DType::F32 ? 4 : 2);
    int64_t p = 0;
    for (; p + KP <= n; p += KP) {
        // The rows of keys kAhead on, in software: each key's row is a separate short run of lines (the
        // cache's rows of one KV head are Hkv rows apart), and the FMAs per line leave too few loads in
        // flight to cover the memory's latency: ~13% faster from memory at 2K-8K positions
        // (bench_attention_cpu --cold 1; 12 and 32 keys ahead measured alike).
        for (int k = 0; k < KP; ++k)
            if (p + kAhead + k < n)
                for (int64_t o = 0; o < row_bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(row_at(p + kAhead + k)) + o, _MM_HINT_T0);
        __m512 a[16];
        for (int i = 0; i < 16; ++i) a[i] = _mm512_setzero_ps();
        for (int64_t j = 0; j < hd; j += 16) {
            __m512 kv[KP];
            for (int k = 0; k < KP; ++k) kv[k] = load_row16<T>(row_at(p + k), j);
            for (int g = 0; g < G; ++g) {
                const __m512 qv = _mm512_loadu_ps(q + g * hd + j);
                for (int k = 0; k < KP; ++k) a[g * KP + k] = _mm512_fmadd_ps(qv, kv[k], a[g * KP + k]);
            }
        }
        alignas(64) float sums[16];
        _mm512_store_ps(sums, _mm512_mul_ps(sum_lanes16(a), _mm512_set1_ps(scale)));
        for (int g = 0; g < G; ++g)
            for (int k = 0; k < KP; ++k) scores[g * n + p + k] = sums[g * KP + k];
    }
    for (; p < n; ++p) {  // the last n % KP keys one at a time
        __m512 a[G];
        for (int g = 0; g < G; ++g) a[g] = _mm512_setzero_ps();
        for (int64_t j = 0; j < hd; j += 16) {
            const __m512 kv = load_row16<T>(row_at(p), j);
            for (int g = 0; g < G; ++g) a[g] = _mm512_fmadd_ps(_mm512_loadu_ps(q + g * hd + j), kv, a[g]);
        }
        for (int g = 0; g < G; ++g) scores[g * n + p] = _mm512_reduce_add_ps(a[g]) * scale;
    }
}

// out[g][j0, j0 + 16 NZ) = sum_p e[g][p] V_p[j0 ...] over the cache's rows: each V piece converted once for
// all G rows. Registers: G x NZ accumulators + NZ pieces.
template <DType T, int G, int NZ>
void accumulate_cached_v(const float* e, const uint8_t* const* v_rows, int64_t n, int64_t j0, int64_t hd, float* out) {
    __m512 acc[G][NZ];
    for (int g = 0; g < G; ++g)
        for (int z = 0; z < NZ; ++z) acc[g][z] = _mm512_setzero_ps();
    constexpr int64_t kAhead = 16;  // keys, as in score_cached_keys
    constexpr int64_t kElemBytes = T == DType::F32 ? 4 : 2;
    for (int64_t p = 0; p < n; ++p) {
        if (p + kAhead < n)
            for (int64_t o = 0; o < 16 * NZ * kElemBytes; o += 64)
                _mm_prefetch(reinterpret_cast<const char*>(v_rows[p + kAhead]) + j0 * kElemBytes + o, _MM_HINT_T0);
        __m512 v[NZ];
        for (int z = 0; z < NZ; ++z) v[z] = load_row16<T>(v_rows[p], j0 + 16 * z);
        for (int g = 0; g < G; ++g) {
            const __m512 ep = _mm512_set1_ps(e[g * n + p]);
            for (int z = 0; z < NZ; ++z) acc[g][z] = _mm512_fmadd_ps(ep, v[z], acc[g][z]);
        }
    }
    for (int g = 0; g < G; ++g)
        for (int z = 0; z < NZ; ++z) _mm512_storeu_ps(out + g * hd + j0 + 16 * z, acc[g][z]);
}

// attention_row.h's AttendCachedPartFn for G (1, 2 or 4) rows.
template <DType T, int G>
void attend_cached_part_of(const float* q, const uint8_t* const* k_rows, const uint8_t* const* v_rows, int64_t n,
                           int64_t hd, float scale, float* scores, float* out, float* m, float* l) {
    score_keys_of<T, G>(q, [k_rows](int64_t p) { return k_rows[p]; }, n, hd, scale, scores);
    for (int g = 0; g < G; ++g) {
        float* sg = scores + g * n;
        float mx = -INFINITY;
        for (int64_t p = 0; p < n; ++p) mx = std::max(mx, sg[p]);
        m[g] = mx;
        l[g] = softmax_numerators(sg, n, mx);
    }
    constexpr int kNZ = G == 4 ? 4 : 8;
    for (int64_t j0 = 0; j0 < hd;) {
        const int64_t left = (hd - j0) / 16;
        if (left >= kNZ) accumulate_cached_v<T, G, kNZ>(scores, v_rows, n, j0, hd, out), j0 += 16 * kNZ;
        else if (left >= 4) accumulate_cached_v<T, G, 4>(scores, v_rows, n, j0, hd, out), j0 += 64;
        else if (left >= 2) accumulate_cached_v<T, G, 2>(scores, v_rows, n, j0, hd, out), j0 += 32;
        else accumulate_cached_v<T, G, 1>(scores, v_rows, n, j0, hd, out), j0 += 16;
    }
}

template <DType T>
void attend_cached_part(const float* q, int G, const uint8_t* const* k_rows, const uint8_t* const* v_rows, int64_t n,
                        int64_t hd, float scale, float* scores, float* out, float* m, float* l) {
    for (int g0 = 0; g0 < G;) {
        const int left = G - g0;
        const float* qg = q + g0 * hd;
        float* og = out + g0 * hd;
        if (left >= 4) attend_cached_part_of<T, 4>(qg, k_rows, v_rows, n, hd, scale, scores, og, m + g0, l + g0), g0 += 4;
        else if (left >= 2) attend_cached_part_of<T, 2>(qg, k_rows, v_rows, n, hd, scale, scores, og, m + g0, l + g0), g0 += 2;
        else attend_cached_part_of<T, 1>(qg, k_rows, v_rows, n, hd, scale, scores, og, m + g0, l + g0), g0 += 1;
    }
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
    score_keys_of<DType::F32, G>(q, [K, hd](int64_t p) { return reinterpret_cast<const uint8_t*>(K + p * hd); }, n_keys, hd,
                                 scale, scores);
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

AttendCachedPartFn attend_cached_part_fast(DType kv_type, int64_t hd) {
    if (!attend_group_fast(hd)) return nullptr;
    switch (kv_type) {
        case DType::F32: return attend_cached_part<DType::F32>;
        case DType::F16: return attend_cached_part<DType::F16>;
        case DType::BF16: return attend_cached_part<DType::BF16>;
        default: return nullptr;
    }
}

}  // namespace dg::cpu
