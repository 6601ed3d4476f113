// exp and SiLU on 16 floats for the fast backend's AVX-512 code (gdn_fast.cpp, elementwise.cpp): the
// libm calls they replace were a tenth of a 0.8B prefill (the conv's and the MLP's SiLU, the chunk decays).
// exp: x = n ln2 + r with |r| <= ln2/2, a degree-6 Taylor polynomial for e^r (truncation below 1.2e-7
// relative), scaled by 2^n with vscalefps (which gives 0 and inf past the f32 range, as expf does).
#pragma once

#include <immintrin.h>

namespace dg::cpu {

__attribute__((target("avx512f"), always_inline)) inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.8f)), _mm512_set1_ps(-104.f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);  // ln2 in two parts
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    return _mm512_scalef_ps(p, n);
}

// x / (1 + e^-x)
__attribute__((target("avx512f"), always_inline)) inline __m512 silu512(__m512 x) {
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

}  // namespace dg::cpu
