// One query row's causal softmax attention over f32 K/V rows, the inner loop of engine/cpu/attention.cpp:
// out[hd] = sum_p softmax_p(scale * q.K_p) V_p over keys p < n_keys.
// The oracle's loops are scalar (bit-exact with the reference it was checked against); the fast backend
// takes the AVX-512 form: 16-lane dot products over hd, a vector exp for the softmax, and V rows
// accumulated unnormalised in registers (one division at the end). At a 1024-token 0.8B prefill the scalar
// loops were a third of the time, more than every weight GEMM together.
#pragma once

#include <cstdint>

#include "engine/formats/dtype.h"

namespace dg::cpu {

// The prefill form: the G query rows of one KV head's group (q_g_hd, out_g_hd: G rows of hd) over the
// same f32 K/V rows, so each K and V row is read once for up to 4 of them (a 1,024-position K of 256 dims
// is 1 MiB per KV head, which one query row at a time streamed from L2 G times over). Each row's result
// is bit for bit that of the one-row kernel it replaced (same summation order; attention_row.cpp says
// why). scores: scratch of 4 * n_keys floats; hd: any multiple of 16.
using AttendGroupFn = void (*)(const float* q_g_hd, int G, const float* K_p_hd, const float* V_p_hd, int64_t n_keys,
                               int64_t hd, float scale, float* scores, float* out_g_hd);

// The AVX-512 kernel, or nullptr where the CPU lacks AVX-512F or hd is not a multiple of 16 (callers keep
// the scalar loops then).
AttendGroupFn attend_group_fast(int64_t hd);

// The same over K/V rows where the paged cache stores them (F32, F16 or BF16), converted in registers:
// the decode path. Dequantising the sequence's whole history into f32 first, as a prefill does once for
// all its query rows, cost a decode step as much as the attention itself at 2K tokens of context.
using AttendCachedRowFn = void (*)(const float* q, const uint8_t* const* k_rows, const uint8_t* const* v_rows,
                                   int64_t n_keys, int64_t hd, float scale, float* scores, float* out);
// nullptr for other cache types (the quantised ones keep the dequantise-then-attend path) or as above.
AttendCachedRowFn attend_cached_row_fast(DType kv_type, int64_t hd);

}  // namespace dg::cpu
