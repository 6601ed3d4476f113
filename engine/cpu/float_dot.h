// The fast path's decode dots for float weights (F32, F16, BF16) against f32 activations: whole rows
// converted to f32 in registers and multiplied with FMA into several independent accumulators (AVX2 +
// F16C + FMA, or AVX-512F where the CPU has it, chosen at run time). They differ from the oracle's
// dot_row_cpu only in the order the products are added (its lane sums are added serially per 256-element
// block for bit-exactness with dot_row): a relative error of a few f32 ulps of the row's magnitude.
// Decode is bound by reading the weights; these keep up with memory on one core.
#pragma once

#include <cstdint>

#include "engine/cpu/quant_dot.h"
#include "engine/formats/dtype.h"

namespace dg::cpu {

// dot(row of `type`, x) over n elements (any n).
using FloatDotFn = float (*)(const uint8_t* row, const float* x, int64_t n);

// The kernel for `type` (F32, F16, BF16) on `isa` (kAvx2, or kAvx512Vnni meaning "the AVX-512 one": a CPU
// with AVX-512 VNNI has AVX-512F/BW/VL); nullptr for other types, kScalar, or an ISA this CPU lacks.
FloatDotFn float_dot_kernel(DType type, QuantIsa isa);

// BF16 rows against activations rounded to bf16 once per matmul (gemm.h's to_bf16), by vdpbf16ps: the
// decode twin of the bf16 GEMM, so a bf16 model's prefill and decode round the activations alike (error
// vs the oracle ~1e-3 of the row's magnitude, as the GEMM's). nrows (1..kBf16Rows) rows lying row_bytes
// apart at once, the activations loaded once for all; out[r] does not depend on nrows. nullptr on a CPU
// without AVX512_BF16, where BF16 keeps the f32 kernel above.
constexpr int kBf16Rows = 8;
using Bf16RowsDotFn = void (*)(const uint8_t* row0, uint64_t row_bytes, int nrows, const uint16_t* xb, int64_t n,
                               float* out);
Bf16RowsDotFn bf16_rows_dot_kernel();

}  // namespace dg::cpu
