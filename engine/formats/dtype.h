// Element types of weights and KV storage, numbered as ggml numbers them (GGUF stores these ids),
// with their block layouts and the row (de)quantisers. Layouts: docs/qwen35-model.md §7.2.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace dg {

enum class DType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q8_0 = 8,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    BF16 = 30,
};

struct DTypeInfo {
    DType type;
    const char* name;     // "f32", "q4_k", ... (lower case, as llama.cpp prints them)
    int64_t block_elems;  // 1 for plain floats
    int64_t block_bytes;  // bytes of one block
};

// nullptr when `ggml_type_id` is not one we support (any other ggml type is an error to the caller).
const DTypeInfo* dtype_info(uint32_t ggml_type_id);
const DTypeInfo& dtype_info(DType t);
// Parses "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k" (case-insensitive).
absl::StatusOr<DType> dtype_from_name(std::string_view name);

// Bytes of a row of n elements; error when n is not a multiple of the block size or overflows.
absl::StatusOr<uint64_t> row_bytes(DType t, int64_t n);

// Row conversion. n must be a multiple of the block size (callers check with row_bytes first).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
// Reference quantisers (round-to-nearest like ggml's *_ref; K-quants with ggml's scale search or a
// simpler near-optimal one: what matters is that the block layout is exact and error is small).
void quantize_row(DType t, const float* src, void* dst, int64_t n);
// Dot product of a stored row with an f32 vector, accumulated in f32 (the CPU matmul's inner loop).
float dot_row(DType t, const void* row, const float* x, int64_t n);

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);    // round to nearest even
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);   // round to nearest even, NaN kept NaN

}  // namespace dg
