// The launch geometry of the CUDA attention kernels (engine/cuda/attention.cu) as plain C++, so the memory
// plan (engine/memory_plan.cpp) sizes the decode workspace with the same formula the kernels use.
//
// Decode (one query token per sequence) is flash-decoding: a block per (sequence, KV head, split) reads
// its split's KV positions once for every query head of the GQA group and leaves an unnormalised partial
// (accumulator, running max, running sum) per query head; a second kernel combines the splits. The split
// count depends on the batch only (not on the context), so the partials' workspace is bounded by the
// batch and a constant, never by the context length.
#pragma once

#include <algorithm>
#include <cstdint>

namespace dg::cuda {

constexpr int kAttnMaxSplits = 64;          // splits of one (sequence, KV head) at most
constexpr int64_t kAttnTargetBlocks = 512;  // decode blocks aimed for (~4 per SM of an H100/H200)
constexpr int64_t kAttnMaxGroup = 8;        // query heads per block; larger GQA groups are cut in chunks

// The kernels serve head dims that are whole warps of lanes (one element per lane per 32): 32..256.
inline bool attn_head_dim_supported(int64_t hd) { return hd >= 32 && hd <= 256 && hd % 32 == 0; }

// Blocks per KV head: a group of G query heads in ceil(G / 8) chunks of at most 8 heads.
inline int64_t attn_head_chunks(int64_t group) { return (group + kAttnMaxGroup - 1) / kAttnMaxGroup; }

// Splits per (decode sequence, KV head): enough blocks to fill the device at small batches, one split
// once the batch alone fills it. `forced` > 0 (tests, the benchmark) sets it, capped at kAttnMaxSplits.
inline int attn_decode_splits(int64_t n_decode, int64_t Hkv, int64_t Hq, int forced) {
    if (forced > 0) return std::min(forced, kAttnMaxSplits);
    const int64_t units = std::max<int64_t>(1, n_decode * Hkv * attn_head_chunks(Hq / std::max<int64_t>(Hkv, 1)));
    return int(std::clamp<int64_t>((kAttnTargetBlocks + units - 1) / units, 1, kAttnMaxSplits));
}

// Floats of the decode partials: per decode sequence, query head and split, hd accumulators + max + sum.
inline int64_t attn_workspace_floats(int64_t n_decode, int64_t Hq, int64_t Hkv, int64_t hd, int forced) {
    return n_decode * Hq * attn_decode_splits(n_decode, Hkv, Hq, forced) * (hd + 2);
}

}  // namespace dg::cuda
