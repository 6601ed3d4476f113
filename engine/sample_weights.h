// The sampler's integer weights (engine/sample_mass.h's sample_weight) for a run of logits at once: with
// AVX-512 where the CPU has it, the same bits as the scalar definition. At temperature 1 most of a
// 248,320-token vocabulary lies within the weight cut, and det_exp one token at a time was 7 ms a row.
// The logprobs' sum of exponentials uses the same SIMD det_exp.
#pragma once

#include <cstdint>

namespace dg {

// w[i] = sample_weight(l[i], top, temperature) for i < n (every l[i] <= top).
void sample_weights(const float* l, int64_t n, float top, float temperature, uint64_t* w);
// The scalar loop, always available: the definition the SIMD loop is tested against.
void sample_weights_scalar(const float* l, int64_t n, float top, float temperature, uint64_t* w);

// The logprobs' normaliser: the sum over i < n of det_exp(l[i] - mx) in double (every l[i] <= mx, one of
// them equal), skipping terms below e^-60 (2^21 of them move the sum by under 2e-20 of itself). The SIMD
// loop adds in 8 lanes, so it differs from the scalar loop's sum in the last bits.
double sum_exp_shifted(const float* l, int64_t n, float mx);
double sum_exp_shifted_scalar(const float* l, int64_t n, float mx);

}  // namespace dg
