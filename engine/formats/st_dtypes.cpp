#include "engine/formats/st_dtypes.h"

namespace dg {

namespace {

// Every dtype the safetensors format defines is listed so sizes can be checked even for tensors we
// refuse to use (an I64 position-id buffer next to the weights is normal).
constexpr StDtype kDtypes[] = {
    {"F32", 4, true, DType::F32},   {"F16", 2, true, DType::F16},   {"BF16", 2, true, DType::BF16},
    {"F64", 8, false, DType::F32},  {"I64", 8, false, DType::F32},  {"I32", 4, false, DType::F32},
    {"I16", 2, false, DType::F32},  {"I8", 1, false, DType::F32},   {"U64", 8, false, DType::F32},
    {"U32", 4, false, DType::F32},  {"U16", 2, false, DType::F32},  {"U8", 1, false, DType::F32},
    {"BOOL", 1, false, DType::F32}, {"F8_E4M3", 1, false, DType::F32}, {"F8_E5M2", 1, false, DType::F32},
    {"F8_E8M0", 1, false, DType::F32},
};

}  // namespace

const StDtype* st_dtype(std::string_view name) {
    for (const StDtype& d : kDtypes) {
        if (name == d.name) return &d;
    }
    return nullptr;
}

const char* st_dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "F32";
        case DType::F16: return "F16";
        case DType::BF16: return "BF16";
        default: return nullptr;
    }
}

}  // namespace dg
