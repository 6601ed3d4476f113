// y[n, out] = x[n, in] · Wᵀ straight from the stored rows (any DType): each weight row is read (and,
// for non-f32 types, dequantised) once per call and dotted with every token row, so decode (n = 1)
// streams the weights exactly once and prefill reuses each row across a tile of tokens.
#include <vector>

#include "engine/cpu/ops.h"
#include "engine/cpu/parallel.h"

namespace dg::cpu {
namespace {

// Dots of one weight row with up to kTile token rows at once: the weight values are loaded once per
// tile. Independent accumulators per token keep the loop vectorisable without -ffast-math; the clone
// for AVX2+FMA is picked at run time on CPUs that have it, the default elsewhere.
constexpr int kTile = 4;
__attribute__((target_clones("avx2,fma", "default")))
void dot_tile(const float* w, const float* x, int64_t x_stride, int tile, int64_t n, float* out) {
    float acc[kTile][8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int t = 0; t < tile; ++t)
            for (int j = 0; j < 8; ++j) acc[t][j] += w[i + j] * x[t * x_stride + i + j];
    for (int t = 0; t < tile; ++t) {
        float s = 0.f;
        for (int64_t k = i; k < n; ++k) s += w[k] * x[t * x_stride + k];
        for (int j = 0; j < 8; ++j) s += acc[t][j];
        out[t] = s;
    }
}

}  // namespace

void matmul(const float* x, int32_t n, const Matrix& W, float* y) {
    const int64_t in = W.cols, out = W.rows;
    const bool plain_f32 = W.type == DType::F32;
    parallel_for(out, [&](int64_t r0, int64_t r1) {
        std::vector<float> row(plain_f32 ? 0 : in);
        float dots[kTile];
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
            for (int32_t t = 0; t < n; t += kTile) {
                const int tile = std::min<int32_t>(kTile, n - t);
                dot_tile(wr, x + int64_t(t) * in, in, tile, in, dots);
                for (int k = 0; k < tile; ++k) y[int64_t(t + k) * out + r] = dots[k];
            }
        }
    }, 16);
}

}  // namespace dg::cpu
