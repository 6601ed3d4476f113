// Qwen3.5 MoE routing on router logits, shared by the backends that route on the host: softmax over all
// experts, top-k (ties to the lower expert index, as the reference), weights renormalised to sum 1
// (Qwen3.5 always renormalises). docs/qwen35-model.md §4.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace dg {

// logits: [n, E], overwritten with the softmax. Returns, per expert, its (token, weight) pairs.
std::vector<std::vector<std::pair<int32_t, float>>> route_top_k(float* logits_n_e, int32_t n, int64_t E, int64_t top_k);

}  // namespace dg
