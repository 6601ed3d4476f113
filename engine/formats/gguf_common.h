// Internal to dg_formats: GGUF value-type sizes and names shared by the reader and the writer.
#pragma once

#include <cstdint>

namespace dg {

// Smallest encoding of a value of GGUF type `type` (strings: the length field, arrays: their header);
// 0 for a type id that does not exist.
uint64_t gguf_min_value_size(uint32_t type);
const char* gguf_type_name(uint32_t type);  // "u32", "string", ...; "invalid" for unknown ids
const char* ggml_type_name(uint32_t id);    // every ggml type id, supported or not (for error messages)

}  // namespace dg
