// Qwen3.5 MoE routing on router logits, shared by the backends that route on the host: softmax over all
// experts, top-k (ties to the lower expert index, as the reference), weights renormalised to sum 1
// (Qwen3.5 always renormalises). docs/qwen35-model.md §4.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

namespace dg {

// logits: [n, E], overwritten with the softmax. Returns, per expert, its (token, weight) pairs.
// Header-only: dg_cuda (linked into dg_engine) uses it too, and static libraries must not depend in a cycle.
inline std::vector<std::vector<std::pair<int32_t, float>>> route_top_k(float* logits, int32_t n, int64_t E, int64_t top_k) {
    std::vector<std::vector<std::pair<int32_t, float>>> routed(E);
    std::vector<int32_t> order(E);
    for (int32_t t = 0; t < n; ++t) {
        float* p = logits + int64_t(t) * E;
        const float mx = *std::max_element(p, p + E);
        float sum = 0.f;
        for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(p[e] - mx);
        for (int64_t e = 0; e < E; ++e) p[e] /= sum;
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
        float norm = 0.f;
        for (int64_t k = 0; k < top_k; ++k) norm += p[order[k]];
        for (int64_t k = 0; k < top_k; ++k) routed[order[k]].push_back({t, p[order[k]] / norm});
    }
    return routed;
}

}  // namespace dg
