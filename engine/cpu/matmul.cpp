// y[n, out] = x[n, in] · Wᵀ straight from the stored rows (any DType): each weight row is read once per
// call and dotted with every token row, so decode (n = 1) streams the weights exactly once.
#include <vector>

#include "engine/cpu/ops.h"
#include "engine/cpu/parallel.h"

namespace dg::cpu {

void matmul(const float* x, int32_t n, const Matrix& W, float* y) {
    const int64_t in = W.cols, out = W.rows;
    const bool plain_f32 = W.type == DType::F32;
    parallel_for(out, [&](int64_t r0, int64_t r1) {
        std::vector<float> row(plain_f32 ? 0 : in);
        for (int64_t r = r0; r < r1; ++r) {
            const float* wr;
            if (plain_f32) {
                wr = reinterpret_cast<const float*>(W.row(r));
            } else if (n == 1) {
                y[r] = dot_row(W.type, W.row(r), x, in);  // fused dequant+dot: no row buffer
                continue;
            } else {
                dequantize_row(W.type, W.row(r), row.data(), in);
                wr = row.data();
            }
            for (int32_t t = 0; t < n; ++t) {
                const float* xt = x + int64_t(t) * in;
                float acc = 0.f;
                for (int64_t i = 0; i < in; ++i) acc += wr[i] * xt[i];
                y[int64_t(t) * out + r] = acc;
            }
        }
    }, 16);
}

}  // namespace dg::cpu
