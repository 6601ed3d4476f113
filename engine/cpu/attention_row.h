// One query row's causal softmax attention, the inner loop of engine/cpu/attention.cpp:
// out[hd] = sum_p softmax_p(scale * q.K_p) V_p over keys p < n_keys.
// The oracle's loops are scalar (bit-exact with the reference it was checked against); the fast backend
// takes the AVX-512 form: 16-lane dot products over hd, a vector exp for the softmax, and V rows
// accumulated unnormalised in registers (one division at the end). At a 1024-token 0.8B prefill the scalar
// loops were a third of the time, more than every weight GEMM together.
#pragma once

#include <cstdint>

#include "engine/formats/dtype.h"

namespace dg::cpu {

// The prefill form over an f32 copy of the history, where the cache's type has no in-place kernel (the
// quantised caches; F16, BF16 and F32 caches go through the in-place form below, prefill too): the G
// query rows of one KV head's group (q_g_hd, out_g_hd: G rows of hd) over the same f32 K/V rows, so each
// K and V row is read once for up to 4 of them (a 1,024-position K of 256 dims
// is 1 MiB per KV head, which one query row at a time streamed from L2 G times over). The scores go as
// the decode form's do: 16 / G keys at a time, one sum per (row, key), the 16 sums reduced together (one
// horizontal sum per (row, key) was a quarter of a 4K-token prefill). scores: scratch of 4 * n_keys
// floats; hd: any multiple of 16.
using AttendGroupFn = void (*)(const float* q_g_hd, int G, const float* K_p_hd, const float* V_p_hd, int64_t n_keys,
                               int64_t hd, float scale, float* scores, float* out_g_hd);

// The AVX-512 kernel, or nullptr where the CPU lacks AVX-512F or hd is not a multiple of 16 (callers keep
// the scalar loops then).
AttendGroupFn attend_group_fast(int64_t hd);

// The in-place form (decode, and prefill over F16, BF16 and F32 caches), over K/V rows where the paged
// cache stores them, converted in registers: the G query rows of one KV head (q_g_hd) over one part of
// the keys, unnormalised, for the caller to merge the parts (flash-decoding's split of the keys; a
// prefill token's keys are one part):
//   m[g] = max_p s_gp, l[g] = sum_p exp(s_gp - m[g]), out_g_hd[g] = sum_p exp(s_gp - m[g]) V_p,
//   s_gp = scale x q_g . K_p over the n_keys rows k_rows[p], v_rows[p].
// Each K and V row is converted once for up to 4 query rows: one row at a time read a KV head's history G
// times over (2 MiB per KV head at 2K tokens of the 0.8B, past L2), and dequantising the whole history to
// f32 first cost a decode step as much as the attention itself. A prefill reads half the bytes of the
// f32 copy (at 8K positions the history comes from memory for every token: 231 -> 335 tok/s).
// scores: scratch of 4 * n_keys floats.
using AttendCachedPartFn = void (*)(const float* q_g_hd, int G, const uint8_t* const* k_rows, const uint8_t* const* v_rows,
                                    int64_t n_keys, int64_t hd, float scale, float* scores, float* out_g_hd, float* m,
                                    float* l);
// nullptr for other cache types (the quantised ones keep the dequantise-then-attend path) or as above.
AttendCachedPartFn attend_cached_part_fast(DType kv_type, int64_t hd);

}  // namespace dg::cpu
