// Row-wise and elementwise CPU ops: RMSNorm, SwiGLU.
#include <cmath>

#include "engine/cpu/ops.h"
#include "engine/cpu/parallel.h"

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

}  // namespace dg::cpu
