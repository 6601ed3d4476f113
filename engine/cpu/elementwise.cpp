// Row-wise and elementwise CPU ops: RMSNorm, SwiGLU.
#include <algorithm>
#include <cmath>

#include "engine/cpu/exp_avx512.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/parallel.h"
#include "engine/cpu/quant_dot.h"

namespace dg::cpu {

void rmsnorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* y) {
    parallel_for(rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* xr = x + r * dim;
            float* yr = y + r * dim;
            double ss = 0;  // double: the reference sums in f32 pairwise; a long f32 loop would drift more
            for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
            const float inv = float(1.0 / std::sqrt(ss / double(dim) + eps));
            for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * w[i];
        }
    }, 4);
}

void swiglu(const float* gate, const float* up, int64_t count, float* out) {
    for (int64_t i = 0; i < count; ++i) {
        const float g = gate[i];
        out[i] = g / (1.f + std::exp(-g)) * up[i];
    }
}

namespace {
__attribute__((target("avx2,fma,avx512f"))) void swiglu_avx512(const float* gate, const float* up, int64_t count,
                                                                float* out) {
    int64_t i = 0;
    for (; i + 16 <= count; i += 16)
        _mm512_storeu_ps(out + i, _mm512_mul_ps(silu512(_mm512_loadu_ps(gate + i)), _mm512_loadu_ps(up + i)));
    for (; i < count; ++i) out[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
}
}  // namespace

void swiglu_fast(const float* gate, const float* up, int64_t count, float* out) {
    if (best_quant_isa() != QuantIsa::kAvx512Vnni) return swiglu(gate, up, count, out);
    parallel_for((count + 15) / 16, [&](int64_t b0, int64_t b1) {
        const int64_t e = std::min(count, b1 * 16);
        swiglu_avx512(gate + b0 * 16, up + b0 * 16, e - b0 * 16, out + b0 * 16);
    }, 1024);  // 16k elements a chunk: a decode step's (3.5k) runs inline
}

}  // namespace dg::cpu
