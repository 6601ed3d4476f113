// Built with -ffp-contract=off (engine/CMakeLists.txt): det_exp's bits depend on every product being
// rounded before its sum, and the AVX-512 target has FMA to contract into.
#include "engine/sample_weights.h"

#include "engine/sample_mass.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace dg {

// Terms below e^-60 are skipped: 2^21 of them add under 2e-20 to a sum of at least 1 (the top's term).
constexpr double kSumExpCut = -60.0;

void sample_weights_scalar(const float* l, int64_t n, float top, float temperature, uint64_t* w) {
    for (int64_t i = 0; i < n; ++i) w[i] = sample_weight(l[i], top, temperature);
}

#if defined(__x86_64__)
namespace {

constexpr double kInvLn2 = 0x1.71547652b82fep+0, kLn2Hi = 0x1.62e42fee00000p-1, kLn2Lo = 0x1.a39ef35793c76p-33;
constexpr double kInvFact[14] = {0x1.0p+0,           0x1.0p+0,           0x1.0p-1,
                                 0x1.5555555555555p-3, 0x1.5555555555555p-5, 0x1.1111111111111p-7,
                                 0x1.6c16c16c16c17p-10, 0x1.a01a01a01a01ap-13, 0x1.a01a01a01a01ap-16,
                                 0x1.71de3a556c734p-19, 0x1.27e4fb7789f5cp-22, 0x1.ae64567f544e4p-26,
                                 0x1.1eed8eff8d898p-29, 0x1.6124613a86d09p-33};

// det_exp's steps on 8 lanes (engine/det_exp.h) for lanes in `live`, each x in [-700, 0]: k = rint(x / ln2),
// the Cody-Waite reduction, the degree-13 Horner sum, then × 2^k, exact there (a normal result). Every +
// and × is a separately rounded IEEE operation, as in the scalar code. Other lanes: garbage.
__attribute__((target("avx512f,avx512dq"))) inline __m512d det_exp_x8(__m512d x, __mmask8 live) {
    const __m512d k = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(kInvLn2)), _MM_FROUND_TO_NEAREST_INT);
    const __m512d r = _mm512_sub_pd(_mm512_sub_pd(x, _mm512_mul_pd(k, _mm512_set1_pd(kLn2Hi))),
                                    _mm512_mul_pd(k, _mm512_set1_pd(kLn2Lo)));
    __m512d p = _mm512_set1_pd(kInvFact[13]);
    for (int j = 12; j >= 0; --j) p = _mm512_add_pd(_mm512_mul_pd(p, r), _mm512_set1_pd(kInvFact[j]));
    const __m512i kk = _mm512_cvtpd_epi64(_mm512_maskz_mov_pd(live, k));
    const __m512d two_k = _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(kk, _mm512_set1_epi64(1023)), 52));
    return _mm512_mul_pd(p, two_k);
}

__attribute__((target("avx512f,avx512dq"))) void weights_avx512(const float* l, int64_t n, float top,
                                                                float temperature, uint64_t* w) {
    const __m512d vtop = _mm512_set1_pd(double(top)), vt = _mm512_set1_pd(double(temperature));
    const __m512d cut = _mm512_set1_pd(-30.0);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512d x = _mm512_div_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(l + i)), vtop), vt);
        const __mmask8 live = _mm512_cmp_pd_mask(x, cut, _CMP_GE_OQ);  // below -30: weight 0, as sample_weight
        if (!live) {
            _mm512_storeu_si512(w + i, _mm512_setzero_si512());
            continue;
        }
        const __m512d e = _mm512_mul_pd(det_exp_x8(x, live), _mm512_set1_pd(0x1p42));
        _mm512_storeu_si512(w + i, _mm512_maskz_cvttpd_epu64(live, e));
    }
    sample_weights_scalar(l + i, n - i, top, temperature, w + i);
}

__attribute__((target("avx512f,avx512dq"))) double sum_exp_avx512(const float* l, int64_t n, float mx) {
    const __m512d vmx = _mm512_set1_pd(double(mx)), cut = _mm512_set1_pd(kSumExpCut);
    __m512d acc = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512d x = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(l + i)), vmx);
        const __mmask8 live = _mm512_cmp_pd_mask(x, cut, _CMP_GE_OQ);
        if (live) acc = _mm512_mask_add_pd(acc, live, acc, det_exp_x8(x, live));
    }
    return _mm512_reduce_add_pd(acc) + sum_exp_shifted_scalar(l + i, n - i, mx);
}

}  // namespace
#endif

double sum_exp_shifted_scalar(const float* l, int64_t n, float mx) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        const double x = double(l[i]) - double(mx);
        if (x >= kSumExpCut) sum += det_exp(x);
    }
    return sum;
}

double sum_exp_shifted(const float* l, int64_t n, float mx) {
#if defined(__x86_64__)
    static const bool simd = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    if (simd) return sum_exp_avx512(l, n, mx);
#endif
    return sum_exp_shifted_scalar(l, n, mx);
}

void sample_weights(const float* l, int64_t n, float top, float temperature, uint64_t* w) {
#if defined(__x86_64__)
    static const bool simd = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    if (simd) return weights_avx512(l, n, top, temperature, w);
#endif
    sample_weights_scalar(l, n, top, temperature, w);
}

}  // namespace dg
