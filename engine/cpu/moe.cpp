// MoE FFN on the CPU: softmax router over all experts, top-k renormalised (Qwen3.5 always renormalises),
// tokens grouped per expert so each expert's weights are read once per step, plus the shared expert
// scaled by sigmoid(shared_gate · x). docs/qwen35-model.md §4.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu/ops.h"
#include "engine/moe_routing.h"

namespace dg::cpu {
namespace {

void swiglu_mlp(const float* x, int32_t n, const MlpWeights& m, float* y, MatmulFn mm) {
    const int64_t I = m.gate.rows;
    std::vector<float> g(int64_t(n) * I), u(int64_t(n) * I);
    mm(x, n, m.gate, g.data());
    mm(x, n, m.up, u.data());
    swiglu(g.data(), u.data(), int64_t(n) * I, g.data());
    mm(g.data(), n, m.down, y);
}

}  // namespace

void moe_ffn(const float* x, int32_t n, const MoeWeights& w, int64_t top_k, float* y, MatmulFn mm) {
    const int64_t E = w.router.rows, H = w.router.cols;
    std::vector<float> logits(int64_t(n) * E);
    // The router always runs exactly: which experts a token visits does not depend on the matmul path.
    matmul(x, n, w.router, logits.data());

    const auto routed = route_top_k(logits.data(), n, E, top_k);  // expert -> (token, weight)

    // Shared expert first (it writes y), then routed experts accumulate.
    swiglu_mlp(x, n, w.shared, y, mm);
    std::vector<float> sg(n);
    mm(x, n, w.shared_gate, sg.data());
    for (int32_t t = 0; t < n; ++t) {
        const float gate = 1.f / (1.f + std::exp(-sg[t]));
        for (int64_t i = 0; i < H; ++i) y[int64_t(t) * H + i] *= gate;
    }

    std::vector<float> xs, ys;
    for (int64_t e = 0; e < E; ++e) {
        const auto& toks = routed[e];
        if (toks.empty()) continue;
        const int32_t m = int32_t(toks.size());
        xs.resize(int64_t(m) * H);
        ys.resize(int64_t(m) * H);
        for (int32_t i = 0; i < m; ++i) std::copy_n(x + int64_t(toks[i].first) * H, H, xs.data() + int64_t(i) * H);
        swiglu_mlp(xs.data(), m, w.experts[e], ys.data(), mm);
        for (int32_t i = 0; i < m; ++i) {
            float* yt = y + int64_t(toks[i].first) * H;
            const float wt = toks[i].second;
            for (int64_t j = 0; j < H; ++j) yt[j] += wt * ys[int64_t(i) * H + j];
        }
    }
}

}  // namespace dg::cpu
