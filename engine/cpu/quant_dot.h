// The fast path's dot products (docs/PERFORMANCE.md, "CPU fast path"): a quantised weight row against
// activations quantised once per matmul to 8-bit blocks, summed in integers over whole blocks, as ggml's
// vec_dot_*_q8 kernels do. The f32-activation path (matmul.cpp) stays the exact oracle; this one trades
// the activations' rounding (8 bits per 32-element block) for integer dot products.
//
// Activation blocks are 32 elements with their own scale (finer than q8_K's 256): every weight type's
// sub-blocks (32 for Q*_0, Q4_K, Q5_K; 16 for Q6_K) fall inside one, so each sub-block's integer dot is
// scaled once by weight scale x activation scale.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/formats/dtype.h"

namespace dg::cpu {

constexpr int kActBlock = 32;

// One token's activations: q[i] * d[i / 32] ~ x[i]; s[b] = sum of block b's q (for weight offsets).
struct Q8Row {
    const int8_t* q;
    const float* d;
    const int32_t* s;
};

// Quantises rows of n floats (n a multiple of 32) into caller-owned storage: d = max|x| / 127 per block,
// q = round(x / d) (ties to even, as std::nearbyint), s = sum of q.
// With AVX-512 where the CPU has it; the scalar loop is the definition (and the test's reference): both
// give the same bytes for finite x.
void quantize_act_rows(const float* x, int64_t rows, int64_t n, int8_t* q, float* d, int32_t* s);
void quantize_act_rows_scalar(const float* x, int64_t rows, int64_t n, int8_t* q, float* d, int32_t* s);

// dot(weight row of `type`, activations) over n elements (n a multiple of the type's block size).
using QuantDotFn = float (*)(const uint8_t* row, const Q8Row& x, int64_t n);

// The same dot for ntok (1..kTokTile) tokens at once: the weight row is loaded and unpacked once per
// block for all of them (prefill). out[t] equals the single-token kernel's result for x[t], bit for bit.
constexpr int kTokTile = 4;
using QuantDotTileFn = void (*)(const uint8_t* row, const Q8Row* x, int ntok, int64_t n, float* out);

enum class QuantIsa { kScalar, kAvx2, kAvx512Vnni };
// The kernel for `type` on `isa`; nullptr for types without one (f32, f16, bf16) or an ISA this build or
// CPU lacks. best_isa() is what the CPU running us supports (cpuid), chosen once.
QuantDotFn quant_dot_kernel(DType type, QuantIsa isa);
// nullptr where there is no tile kernel (scalar; types other than Q8_0, Q4_K, Q6_K, and Q5_K with VNNI):
// call the dot per token.
QuantDotTileFn quant_dot_tile_kernel(DType type, QuantIsa isa);
QuantIsa best_quant_isa();
const char* quant_isa_name(QuantIsa isa);
bool has_quant_kernel(DType type);

}  // namespace dg::cpu
