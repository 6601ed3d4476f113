// The fast path's prefill GEMM (docs/PERFORMANCE.md, "CPU fast path: prefill GEMM"): y[n, rows] =
// x[n, cols] · Wᵀ for a batch of tokens, register-blocked over 4 weight rows x 32 tokens.
//
// Layout (why it looks like this): the tokens are the vector lanes (16 per 512-bit register) and the
// weights the broadcast operand, so weight rows are used in their stored order and only need unpacking,
// never transposing; the activations are transposed once per call (cheap: n x cols).
// * Quantised weights: each thread unpacks a panel of 16 weight rows per step into int8 (plus a float
//   scale, and a min where the format has one, per 32-element group; 16 for Q6_K) and multiplies it with
//   the activations quantised to 8-bit blocks of 32 exactly as the decode kernels do (quant_dot.h), by
//   AVX-512 VNNI (vpdpbusd: the activations +128 as the unsigned operand, the weights as the signed
//   broadcast; the +128 is taken out with the group's weight sum). Integer sums are exact; a token's
//   result differs from the decode kernel's only in the order the group floats are added.
// * BF16 weights: the raw rows are the broadcast operand of vdpbf16ps (AVX512_BF16), the activations
//   rounded to bf16 once per call (as ggml's bf16 matmul does).
// * F32 and F16 weights (and BF16 on a CPU without AVX512_BF16): rows converted to f32 per panel, f32 FMA.
// The panel (16 rows) is reused for every token tile of the call, the token tile (32 tokens) for the
// panel's 4 micro-kernel row groups. Threads take disjoint ranges of panels through the pool.
#pragma once

#include <cstdint>

#include "engine/backend.h"

namespace dg::cpu {

// From this many tokens on, matmul_fast uses the GEMM; below, the per-row decode kernels over token tiles
// of 4 (matmul_fast_rows). Measured by tests/bench/bench_gemm_crossover on the 2-core Zen 5 VM (3584 x
// 1024 matrix, docs/PERFORMANCE.md): the GEMM's time is nearly flat in n up to 32 tokens (its lanes are 16
// tokens wide and unpacking the weights is a fixed cost), the per-row path's linear; in two runs under
// different load they crossed at 5-12 tokens for the quantised types and at 6-8 for the float ones.
constexpr int32_t kGemmMinTokensQuant = 8;
constexpr int32_t kGemmMinTokensFloat = 8;
int32_t gemm_min_tokens(DType type);

// Whether gemm() can run W's type on this CPU (AVX-512 VNNI for quantised types, AVX-512F for float).
bool gemm_supported(DType type);
// y[n, W.rows] = x[n, W.cols] · Wᵀ; requires gemm_supported(W.type) and W.cols % 32 == 0 (quantised).
void gemm(const float* x, int32_t n, const Matrix& W, float* y);

// Whether the CPU has AVX512_BF16 (vdpbf16ps); the bf16 GEMM and the bf16 decode dot need it.
bool has_avx512_bf16();
// f32 -> bf16, round to nearest even (the activations of the bf16 kernels); only where has_avx512_bf16().
void to_bf16(const float* x, int64_t n, uint16_t* out);

}  // namespace dg::cpu
