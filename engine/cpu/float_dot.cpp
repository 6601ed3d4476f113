// Decode dots for F32 / F16 / BF16 rows (float_dot.h): one source per vector width, compiled inside
// `#pragma GCC target` regions so the baseline build still runs on CPUs without them.
#include "engine/cpu/float_dot.h"

#include <immintrin.h>

#include "engine/cpu/gemm.h"
#include "engine/formats/quant_blocks.h"

namespace dg::cpu {
namespace {

enum class Kind { kF32, kF16, kBf16 };

// The scalar tail (fewer elements than one vector), in the same conversion as the vector body.
template <Kind K>
inline float tail(const uint8_t* row, const float* x, int64_t i, int64_t n) {
    float s = 0.f;
    for (; i < n; ++i) {
        float w;
        if constexpr (K == Kind::kF32) w = reinterpret_cast<const float*>(row)[i];
        else if constexpr (K == Kind::kF16) w = qb::f16_to_f32_fast(qb::load_u16(row + 2 * i));
        else w = qb::bf16_to_f32_fast(qb::load_u16(row + 2 * i));
        s += w * x[i];
    }
    return s;
}

}  // namespace

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2 {
namespace {
// 8 weights at element i as f32.
template <Kind K>
inline __m256 load8(const uint8_t* row, int64_t i) {
    if constexpr (K == Kind::kF32) return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i));
    if constexpr (K == Kind::kF16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
template <Kind K>
float dot(const uint8_t* row, const float* x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;  // four independent FMA chains
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load8<K>(row, i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load8<K>(row, i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load8<K>(row, i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load8<K>(row, i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load8<K>(row, i), _mm256_loadu_ps(x + i), a0);
    const __m256 s8 = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s) + tail<K>(row, x, i, n);
}
}  // namespace
// Instantiated here, inside the target region.
FloatDotFn pick(DType t) {
    switch (t) {
        case DType::F32: return dot<Kind::kF32>;
        case DType::F16: return dot<Kind::kF16>;
        case DType::BF16: return dot<Kind::kBf16>;
        default: return nullptr;
    }
}
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw")
namespace avx512 {
namespace {
template <Kind K>
inline __m512 load16(const uint8_t* row, int64_t i) {
    if constexpr (K == Kind::kF32) return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + i);
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i));
    if constexpr (K == Kind::kF16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
template <Kind K>
float dot(const uint8_t* row, const float* x, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(load16<K>(row, i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(load16<K>(row, i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(load16<K>(row, i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(load16<K>(row, i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(load16<K>(row, i), _mm512_loadu_ps(x + i), a0);
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))) + tail<K>(row, x, i, n);
}
}  // namespace
// Instantiated here, inside the target region.
FloatDotFn pick(DType t) {
    switch (t) {
        case DType::F32: return dot<Kind::kF32>;
        case DType::F16: return dot<Kind::kF16>;
        case DType::BF16: return dot<Kind::kBf16>;
        default: return nullptr;
    }
}
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512bf16")
namespace avx512bf16 {
namespace {
// 64 elements per step in two vdpbf16ps chains per row: the weights are used as stored (no conversion), so
// the kernel is a load and one instruction per 32 elements and keeps up with memory with room to spare.
// R rows (lying row_bytes apart) at once, the activations loaded once for all: decode takes 8, as
// ik_llama.cpp's bf16 GEMV does. With the weights in 2 MiB pages, 8 interleaved row streams read 3-7%
// faster than one row at a time with a 4 KiB software prefetch (bench_decode_matmuls, alternating runs;
// docs/PERFORMANCE.md, issue 12 fifth part). Each row's sums do not depend on R.
template <int R>
void dot_rows(const uint8_t* row0, uint64_t row_bytes, const uint16_t* xb, int64_t n, float* out) {
    __m512 a0[R], a1[R];
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m512bh x0 = (__m512bh)_mm512_loadu_si512(xb + i), x1 = (__m512bh)_mm512_loadu_si512(xb + i + 32);
        for (int r = 0; r < R; ++r) {
            const uint8_t* p = row0 + r * row_bytes + 2 * i;
            // The same place R rows on: the next call's block. The 8 interleaved row streams are too short
            // for the hardware prefetcher (2 KiB each at 1,024 columns); without this decode waited on memory
            // (18-21 -> 30-31 tok/s on the 0.8B bf16 file, PERFORMANCE.md ninth part).
            _mm_prefetch(reinterpret_cast<const char*>(p + R * row_bytes), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(p + R * row_bytes + 64), _MM_HINT_T0);
            a0[r] = _mm512_dpbf16_ps(a0[r], (__m512bh)_mm512_loadu_si512(p), x0);
            a1[r] = _mm512_dpbf16_ps(a1[r], (__m512bh)_mm512_loadu_si512(p + 64), x1);
        }
    }
    for (int r = 0; r < R; ++r) {
        const uint8_t* row = row0 + r * row_bytes;
        float s = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r]));
        for (int64_t k = i; k < n; ++k) s += qb::bf16_to_f32_fast(qb::load_u16(row + 2 * k)) * qb::bf16_to_f32_fast(xb[k]);
        out[r] = s;
    }
}
void dot_rows_any(const uint8_t* row0, uint64_t row_bytes, int nrows, const uint16_t* xb, int64_t n, float* out) {
    switch (nrows) {
        case 8: return dot_rows<8>(row0, row_bytes, xb, n, out);
        case 7: return dot_rows<7>(row0, row_bytes, xb, n, out);
        case 6: return dot_rows<6>(row0, row_bytes, xb, n, out);
        case 5: return dot_rows<5>(row0, row_bytes, xb, n, out);
        case 4: return dot_rows<4>(row0, row_bytes, xb, n, out);
        case 3: return dot_rows<3>(row0, row_bytes, xb, n, out);
        case 2: return dot_rows<2>(row0, row_bytes, xb, n, out);
        default: return dot_rows<1>(row0, row_bytes, xb, n, out);
    }
}
}  // namespace
Bf16RowsDotFn pick_rows() { return dot_rows_any; }
}  // namespace avx512bf16
#pragma GCC pop_options

Bf16RowsDotFn bf16_rows_dot_kernel() { return has_avx512_bf16() ? avx512bf16::pick_rows() : nullptr; }

FloatDotFn float_dot_kernel(DType type, QuantIsa isa) {
    if (isa == QuantIsa::kScalar || isa > best_quant_isa()) return nullptr;
    return isa == QuantIsa::kAvx512Vnni ? avx512::pick(type) : avx2::pick(type);
}

}  // namespace dg::cpu
