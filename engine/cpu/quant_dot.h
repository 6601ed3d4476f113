// The fast path's dot products (docs/PERFORMANCE.md, "CPU fast path"): a quantised weight row against
// activations quantised once per matmul to 8-bit blocks, summed in integers over whole blocks, as ggml's
// vec_dot_*_q8 kernels do. The f32-activation path (matmul.cpp) stays the exact oracle; this one trades
// the activations' rounding (8 bits per 32-element block) for integer dot products.
//
// Two activation formats (ActFormat):
//  - kBlock32: a scale per 32 elements. Every weight type's sub-blocks (32 for Q*_0, Q4_K, Q5_K; 16 for
//    Q6_K) fall inside one, so each sub-block's integer dot is scaled once by weight scale x activation
//    scale. Every type has kernels for it; the CUDA GEMV quantises this way (bit for bit).
//  - kSuper256: one scale per 256-element super-block (ggml's q8_K), sums still per 32. For Q4_K and Q5_K
//    with VNNI: the 8 sub-block dots of a super-block are multiplied by their 6-bit integer scales in
//    integers (vpmaddubsw + vpdpwssd) and converted to float once per super-block, where kBlock32 needs a
//    float conversion, scale and FMA per sub-block, which bounded q4_k_m decode (compute, not memory): 26 ->
//    30 GB/s per core in L2 (docs/PERFORMANCE.md, seventh part). The activations' rounding is coarser.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/formats/dtype.h"

namespace dg::cpu {

constexpr int kActBlock = 32;

enum class ActFormat { kBlock32, kSuper256 };

// kSuper256 stores the 8 sub-blocks of 32 of each super-block in the order 0, 2, 1, 3, 4, 6, 5, 7, so
// the low and the high nibbles of 64 Q4_K quant bytes (sub-blocks 4h, 4h + 2 and 4h + 1, 4h + 3) each
// meet 64 contiguous activations. Where element i of a row is stored:
inline int64_t super256_pos(int64_t i) {
    const int64_t j = (i / 32) % 8;
    const int64_t slot = (j & 4) | ((j & 1) << 1) | ((j >> 1) & 1);
    return i / 256 * 256 + slot * 32 + i % 32;
}

// One token's activations.
//   kBlock32:  q[i] * d[i / 32] ~ x[i];                 s[b] = sum of the q of elements 32b .. 32b + 31.
//   kSuper256: q[super256_pos(i)] * d[i / 256] ~ x[i];  s[b] the same (elements 32b .. 32b + 31).
// s serves the weight offsets (Q4_1's m, the K-quants' mins). s16 (kBlock32, where a kernel asks for it:
// the packed Q6_K one, rows16.h): s16[j] = sum of the q of elements 16j .. 16j + 15, for Q6_K's offset of
// 32 per sub-block of 16; nullptr elsewhere.
struct Q8Row {
    const int8_t* q;
    const float* d;
    const int32_t* s;
    const int32_t* s16 = nullptr;
};
// s16 of rows of n int8 activations (n a multiple of 16).
void act_sums16(const int8_t* q, int64_t rows, int64_t n, int32_t* s16);

// Quantises rows of n floats (n a multiple of 32) into caller-owned storage: d = max|x| / 127 per block,
// q = round(x / d) (ties to even, as std::nearbyint), s = sum of q.
// With AVX-512 where the CPU has it; the scalar loop is the definition (and the test's reference): both
// give the same bytes for finite x.
void quantize_act_rows(const float* x, int64_t rows, int64_t n, int8_t* q, float* d, int32_t* s);
void quantize_act_rows_scalar(const float* x, int64_t rows, int64_t n, int8_t* q, float* d, int32_t* s);
// kSuper256 (n a multiple of 256): d = max|x| / 127 per 256 elements, q as above, in super256_pos order;
// s per 32 elements. Same pairing of a fast and a scalar defining loop.
void quantize_act_rows_super256(const float* x, int64_t rows, int64_t n, int8_t* q, float* d, int32_t* s);
void quantize_act_rows_super256_scalar(const float* x, int64_t rows, int64_t n, int8_t* q, float* d, int32_t* s);
// Either format; d holds rows * n / act_scale_elems(f) floats, s rows * n / 32 sums.
void quantize_act(ActFormat f, const float* x, int64_t rows, int64_t n, int8_t* q, float* d, int32_t* s);
constexpr int64_t act_scale_elems(ActFormat f) { return f == ActFormat::kSuper256 ? 256 : kActBlock; }

// dot(weight row of `type`, activations) over n elements (n a multiple of the type's block size).
using QuantDotFn = float (*)(const uint8_t* row, const Q8Row& x, int64_t n);

// The same dot for ntok (1..kTokTile) tokens at once: the weight row is loaded and unpacked once per
// block for all of them (prefill). out[t] equals the single-token kernel's result for x[t], bit for bit.
constexpr int kTokTile = 4;
using QuantDotTileFn = void (*)(const uint8_t* row, const Q8Row* x, int ntok, int64_t n, float* out);

enum class QuantIsa { kScalar, kAvx2, kAvx512Vnni };
// The kernel for `type` on `isa` reading activations in format f; nullptr for types without one (f32,
// f16, bf16), an ISA this build or CPU lacks, or a format the type has no kernel for on that ISA
// (kSuper256: Q4_K and Q5_K, scalar and VNNI). best_isa() is what the CPU running us supports (cpuid),
// chosen once.
QuantDotFn quant_dot_kernel(DType type, QuantIsa isa, ActFormat f = ActFormat::kBlock32);
// nullptr where there is no tile kernel (scalar; types other than Q8_0, Q4_K, Q6_K, and Q5_K with VNNI):
// call the dot per token.
QuantDotTileFn quant_dot_tile_kernel(DType type, QuantIsa isa, ActFormat f = ActFormat::kBlock32);
// The format the fast path quantises to for `type` on `isa`: kSuper256 where that has a SIMD kernel.
ActFormat fast_act_format(DType type, QuantIsa isa);
QuantIsa best_quant_isa();
const char* quant_isa_name(QuantIsa isa);
bool has_quant_kernel(DType type);

}  // namespace dg::cpu
