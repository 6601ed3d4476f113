// Internal to dg_formats: safetensors dtype names, their element sizes, and which ones deltagate reads.
#pragma once

#include <cstdint>
#include <string_view>

#include "engine/formats/dtype.h"

namespace dg {

struct StDtype {
    const char* name;  // as safetensors writes it: "F32", "BF16", "I64", ...
    uint64_t size;     // bytes per element
    bool supported;    // F32 / F16 / BF16 only
    DType type;        // meaningful only when supported
};

const StDtype* st_dtype(std::string_view name);  // nullptr for a name safetensors does not define
const char* st_dtype_name(DType t);              // nullptr for a type safetensors cannot store

}  // namespace dg
