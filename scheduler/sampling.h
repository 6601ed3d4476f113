// Token sampling on the host: greedy (temperature 0) or seeded random sampling with temperature,
// top-k, top-p and min-p, applied in that order (as llama.cpp and vLLM do). Deterministic: the same
// logits, parameters and seed give the same tokens on every machine (own RNG, own uniform mapping).
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/status.h"

namespace dg::sched {

struct SamplingParams {
    float temperature = 0.f;  // 0 = greedy
    int32_t top_k = 0;        // 0 = off
    float top_p = 1.f;        // 1 = off; (0, 1]
    float min_p = 0.f;        // 0 = off; [0, 1]: drop tokens below min_p × the top probability
    uint64_t seed = 0;
};

absl::Status validate_sampling(const SamplingParams& p);

// The seed of fork child `index` (n > 1): child 0 keeps the request's seed.
uint64_t child_seed(uint64_t seed, int32_t index);

class Sampler {
public:
    explicit Sampler(const SamplingParams& p = {});
    int32_t sample(std::span<const float> logits);

private:
    double uniform();  // [0, 1), 53 bits
    SamplingParams p_;
    uint64_t state_;   // splitmix64 stream
};

}  // namespace dg::sched
