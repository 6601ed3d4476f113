// The sampler's integer weights (engine/sample_mass.h's sample_weight) for a run of logits at once: with
// AVX-512 where the CPU has it, the same bits as the scalar definition. At temperature 1 most of a
// 248,320-token vocabulary lies within the weight cut, and det_exp one token at a time was 7 ms a row.
#pragma once

#include <cstdint>

namespace dg {

// w[i] = sample_weight(l[i], top, temperature) for i < n (every l[i] <= top).
void sample_weights(const float* l, int64_t n, float top, float temperature, uint64_t* w);
// The scalar loop, always available: the definition the SIMD loop is tested against.
void sample_weights_scalar(const float* l, int64_t n, float top, float temperature, uint64_t* w);

}  // namespace dg
