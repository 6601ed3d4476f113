// Activation quantisation, the scalar reference kernels (the definition of each dot, used on CPUs without
// AVX2 and as the SIMD kernels' reference in tests) and run-time selection of the SIMD ones.
#include "engine/cpu/quant_dot.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "engine/formats/quant_blocks.h"

namespace dg::cpu {

namespace {

// Where block j (of 32 elements) of a group of kGroup elements starts in q: in order for kBlock32 (one
// block per group), at its super256_pos slot for kSuper256.
template <int kGroup>
int64_t block_start(int j) {
    return kGroup == 256 ? super256_pos(32 * j) : 32 * j;
}

// Both formats' defining loop: per group of kGroup elements (32: kBlock32, 256: kSuper256) one scale
// d = max|x| / 127; each 32-element block rounded to q = round(x x 127 / max|x|) (ties to even, as
// std::nearbyint; |q| <= 127) into its slot, s = the block's sum of q.
template <int kGroup>
void quantize_groups_scalar(const float* x, int64_t elems, int8_t* q, float* d, int32_t* s) {
    for (int64_t g = 0; g < elems / kGroup; ++g) {
        const float* xg = x + kGroup * g;
        float amax = 0.f;
        for (int i = 0; i < kGroup; ++i) amax = std::max(amax, std::fabs(xg[i]));
        const float inv = amax > 0.f ? 127.f / amax : 0.f;
        d[g] = amax / 127.f;
        for (int j = 0; j < kGroup / 32; ++j) {
            int8_t* qj = q + kGroup * g + block_start<kGroup>(j);
            int32_t sum = 0;
            for (int l = 0; l < 32; ++l) {
                const int v = int(std::nearbyint(xg[32 * j + l] * inv));
                qj[l] = int8_t(v);
                sum += v;
            }
            s[kGroup / 32 * g + j] = sum;
        }
    }
}

}  // namespace

void quantize_act_rows_scalar(const float* x, int64_t rows, int64_t n, int8_t* q, float* d, int32_t* s) {
    quantize_groups_scalar<kActBlock>(x, rows * n, q, d, s);
}

void quantize_act_rows_super256_scalar(const float* x, int64_t rows, int64_t n, int8_t* q, float* d, int32_t* s) {
    quantize_groups_scalar<256>(x, rows * n, q, d, s);
}

#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl")
namespace {
// quantize_groups_scalar on 16-lane registers, bit for bit: the same max, the same float division and
// product, and vcvtps2dq in the default rounding mode (nearest, ties to even) is std::nearbyint's rounding.
// Prefill quantises every matmul input of every token (1024 tokens x 6 inputs x 24 layers), where the
// scalar loop was 3% of a 1,024-token q4_k_m prefill.
template <int kGroup>
void quantize_groups_avx512(const float* x, int64_t elems, int8_t* q, float* d, int32_t* s) {
    for (int64_t g = 0; g < elems / kGroup; ++g) {
        const float* xg = x + kGroup * g;
        __m512 m = _mm512_setzero_ps();
        for (int i = 0; i < kGroup; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xg + i)));
        const float amax = _mm512_reduce_max_ps(m);
        const float inv = amax > 0.f ? 127.f / amax : 0.f;
        d[g] = amax / 127.f;
        const __m512 vinv = _mm512_set1_ps(inv);
        for (int j = 0; j < kGroup / 32; ++j) {
            const __m512i v0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xg + 32 * j), vinv));
            const __m512i v1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xg + 32 * j + 16), vinv));
            int8_t* qj = q + kGroup * g + block_start<kGroup>(j);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(qj), _mm512_cvtepi32_epi8(v0));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(qj + 16), _mm512_cvtepi32_epi8(v1));
            s[kGroup / 32 * g + j] = _mm512_reduce_add_epi32(_mm512_add_epi32(v0, v1));
        }
    }
}
}  // namespace
#pragma GCC pop_options

static bool has_avx512_quantize() {
    static const bool avx512 = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
    }();
    return avx512;
}

void quantize_act_rows_super256(const float* x, int64_t rows, int64_t n, int8_t* q, float* d, int32_t* s) {
    if (has_avx512_quantize()) return quantize_groups_avx512<256>(x, rows * n, q, d, s);
    quantize_act_rows_super256_scalar(x, rows, n, q, d, s);
}

void quantize_act(ActFormat f, const float* x, int64_t rows, int64_t n, int8_t* q, float* d, int32_t* s) {
    if (f == ActFormat::kSuper256) return quantize_act_rows_super256(x, rows, n, q, d, s);
    quantize_act_rows(x, rows, n, q, d, s);
}

void act_sums16(const int8_t* q, int64_t rows, int64_t n, int32_t* s16) {
    for (int64_t j = 0; j < rows * n / 16; ++j) {
        int32_t sum = 0;
        for (int i = 0; i < 16; ++i) sum += q[16 * j + i];
        s16[j] = sum;
    }
}

void quantize_act_rows(const float* x, int64_t rows, int64_t n, int8_t* q, float* d, int32_t* s) {
    if (has_avx512_quantize()) return quantize_groups_avx512<kActBlock>(x, rows * n, q, d, s);
    quantize_act_rows_scalar(x, rows, n, q, d, s);
}

namespace {

// ---- scalar reference: one float per block (weight scale x activation scale x integer dot), added in order

float ref_q8_0(const uint8_t* row, const Q8Row& x, int64_t n) {
    float acc = 0.f;
    for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* p = row + 34 * b;
        const int8_t* w = reinterpret_cast<const int8_t*>(p + qb::kQ8_0_Qs);
        int32_t isum = 0;
        for (int i = 0; i < 32; ++i) isum += int32_t(w[i]) * x.q[32 * b + i];
        acc += qb::load_f16(p) * x.d[b] * float(isum);
    }
    return acc;
}

float ref_q4_0(const uint8_t* row, const Q8Row& x, int64_t n) {
    float acc = 0.f;
    for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* p = row + 18 * b;
        int32_t isum = 0;
        for (int i = 0; i < 16; ++i) {
            isum += ((p[2 + i] & 0xF) - 8) * x.q[32 * b + i];
            isum += ((p[2 + i] >> 4) - 8) * x.q[32 * b + 16 + i];
        }
        acc += qb::load_f16(p) * x.d[b] * float(isum);
    }
    return acc;
}

float ref_q4_1(const uint8_t* row, const Q8Row& x, int64_t n) {
    float acc = 0.f;
    for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* p = row + 20 * b;
        int32_t isum = 0;
        for (int i = 0; i < 16; ++i) {
            isum += (p[4 + i] & 0xF) * x.q[32 * b + i];
            isum += (p[4 + i] >> 4) * x.q[32 * b + 16 + i];
        }
        acc += qb::load_f16(p) * x.d[b] * float(isum) + qb::load_f16(p + 2) * x.d[b] * float(x.s[b]);
    }
    return acc;
}

// Q4_K and Q5_K: 8 sub-blocks of 32 with a 6-bit scale and min each; Q5_K adds a fifth bit from qh.
// Element l of sub-block j of the super-block at p, unscaled (0..15, or 0..31 for Q5_K).
template <bool kQ5>
int k_quant(const uint8_t* p, int j, int l) {
    constexpr int kQs = kQ5 ? qb::kQ5_K_Qs : qb::kQ4_K_Qs;
    const uint8_t q = p[kQs + 32 * (j / 2) + l];
    int v = j % 2 ? q >> 4 : q & 0xF;
    if (kQ5) v |= ((p[qb::kQ5_K_Qh + l] >> j) & 1) << 4;
    return v;
}
template <bool kQ5>
float ref_qk(const uint8_t* row, const Q8Row& x, int64_t n) {
    constexpr int kBytes = kQ5 ? 176 : 144;
    float acc = 0.f;
    for (int64_t sb = 0; sb < n / 256; ++sb) {
        const uint8_t* p = row + kBytes * sb;
        const float d = qb::load_f16(p), dmin = qb::load_f16(p + 2);
        for (int j = 0; j < 8; ++j) {
            uint8_t sc, mn;
            qb::scale_min_k4(j, p + 4, &sc, &mn);
            int32_t isum = 0;
            for (int l = 0; l < 32; ++l) isum += k_quant<kQ5>(p, j, l) * x.q[256 * sb + 32 * j + l];
            const int64_t b = 8 * sb + j;
            acc += d * sc * x.d[b] * float(isum) - dmin * mn * x.d[b] * float(x.s[b]);
        }
    }
    return acc;
}

// The same in kSuper256: per super-block, the integer sum of scale_j x (sub-block j's dot) and of
// min_j x s_j, each scaled once: d x d_x x sum - dmin x d_x x msum.
template <bool kQ5>
float ref_qk_super256(const uint8_t* row, const Q8Row& x, int64_t n) {
    constexpr int kBytes = kQ5 ? 176 : 144;
    float acc = 0.f;
    for (int64_t sb = 0; sb < n / 256; ++sb) {
        const uint8_t* p = row + kBytes * sb;
        const float d = qb::load_f16(p), dmin = qb::load_f16(p + 2);
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 8; ++j) {
            uint8_t sc, mn;
            qb::scale_min_k4(j, p + 4, &sc, &mn);
            int32_t dot = 0;
            for (int l = 0; l < 32; ++l) dot += k_quant<kQ5>(p, j, l) * x.q[256 * sb + super256_pos(32 * j + l)];
            isum += sc * dot;
            msum += mn * x.s[8 * sb + j];
        }
        acc += d * x.d[sb] * float(isum) - dmin * x.d[sb] * float(msum);
    }
    return acc;
}

float ref_q6_k(const uint8_t* row, const Q8Row& x, int64_t n) {
    float acc = 0.f;
    for (int64_t sb = 0; sb < n / 256; ++sb) {
        const uint8_t* p = row + 210 * sb;
        const float d = qb::load_f16(p + qb::kQ6_K_D);
        const int8_t* sc = reinterpret_cast<const int8_t*>(p + qb::kQ6_K_Sc);
        for (int j = 0; j < 8; ++j) {
            const int h = j / 4, k = j % 4;
            const uint8_t* ql = p + qb::kQ6_K_Ql + 64 * h + 32 * (k % 2);
            const uint8_t* qh = p + qb::kQ6_K_Qh + 32 * h;
            int32_t isum = 0;
            for (int l = 0; l < 32; ++l) {
                const int v = ((k < 2 ? ql[l] & 0xF : ql[l] >> 4) | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
                isum += sc[2 * j + l / 16] * v * x.q[256 * sb + 32 * j + l];
            }
            acc += d * x.d[8 * sb + j] * float(isum);
        }
    }
    return acc;
}

QuantDotFn ref_kernel(DType t) {
    switch (t) {
        case DType::Q8_0: return ref_q8_0;
        case DType::Q4_0: return ref_q4_0;
        case DType::Q4_1: return ref_q4_1;
        case DType::Q4_K: return ref_qk<false>;
        case DType::Q5_K: return ref_qk<true>;
        case DType::Q6_K: return ref_q6_k;
        default: return nullptr;
    }
}

}  // namespace

// ---- SIMD kernels: the same source compiled for two targets (quant_dot_x86.inc)

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2 {
#define DG_QD_VNNI 0
#include "engine/cpu/quant_dot_x86.inc"
#undef DG_QD_VNNI
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")
namespace vnni {
#define DG_QD_VNNI 1
#include "engine/cpu/quant_dot_x86.inc"
#undef DG_QD_VNNI
}  // namespace vnni
#pragma GCC pop_options

QuantIsa best_quant_isa() {
    static const QuantIsa isa = [] {
        __builtin_cpu_init();
        if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return QuantIsa::kScalar;
        if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512bw"))
            return QuantIsa::kAvx512Vnni;
        return QuantIsa::kAvx2;
    }();
    return isa;
}

const char* quant_isa_name(QuantIsa isa) {
    switch (isa) {
        case QuantIsa::kScalar: return "scalar";
        case QuantIsa::kAvx2: return "avx2";
        case QuantIsa::kAvx512Vnni: return "avx512-vnni";
    }
    return "?";
}

QuantDotTileFn quant_dot_tile_kernel(DType type, QuantIsa isa, ActFormat f) {
    if (isa > best_quant_isa()) return nullptr;
    if (f == ActFormat::kSuper256) return isa == QuantIsa::kAvx512Vnni ? vnni::tile_kernel_super256(type) : nullptr;
    switch (isa) {
        case QuantIsa::kScalar: return nullptr;
        case QuantIsa::kAvx2: return avx2::tile_kernel(type);
        case QuantIsa::kAvx512Vnni: return vnni::tile_kernel(type);
    }
    return nullptr;
}

ActFormat fast_act_format(DType type, QuantIsa isa) {
    return isa == QuantIsa::kAvx512Vnni && vnni::kernel_super256(type) ? ActFormat::kSuper256 : ActFormat::kBlock32;
}

bool has_quant_kernel(DType type) { return ref_kernel(type) != nullptr; }

QuantDotFn quant_dot_kernel(DType type, QuantIsa isa, ActFormat f) {
    if (isa > best_quant_isa()) return nullptr;  // the CPU would fault on its instructions
    if (f == ActFormat::kSuper256) {
        switch (isa) {
            case QuantIsa::kScalar:
                return type == DType::Q4_K ? ref_qk_super256<false> : type == DType::Q5_K ? ref_qk_super256<true> : nullptr;
            case QuantIsa::kAvx2: return nullptr;
            case QuantIsa::kAvx512Vnni: return vnni::kernel_super256(type);
        }
        return nullptr;
    }
    switch (isa) {
        case QuantIsa::kScalar: return ref_kernel(type);
        case QuantIsa::kAvx2: return avx2::kernel(type);
        case QuantIsa::kAvx512Vnni: return vnni::kernel(type);
    }
    return nullptr;
}

}  // namespace dg::cpu
