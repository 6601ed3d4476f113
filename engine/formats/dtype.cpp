// DType table, half-precision conversions and row sizes. The per-type block code lives in
// quant_blocks.h (dequantisation) and quantize.cpp (reference quantisers); dot_row in dot.cpp.
#include "engine/formats/dtype.h"

#include <cctype>
#include <cstring>
#include <string>

#include "absl/strings/str_format.h"
#include "engine/status.h"

namespace dg {

namespace {

constexpr DTypeInfo kTable[] = {
    {DType::F32, "f32", 1, 4},      {DType::F16, "f16", 1, 2},        {DType::Q4_0, "q4_0", 32, 18},
    {DType::Q4_1, "q4_1", 32, 20},  {DType::Q8_0, "q8_0", 32, 34},    {DType::Q4_K, "q4_k", 256, 144},
    {DType::Q5_K, "q5_k", 256, 176}, {DType::Q6_K, "q6_k", 256, 210}, {DType::BF16, "bf16", 1, 2},
};

uint32_t bits_of(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

float float_of(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

}  // namespace

const DTypeInfo* dtype_info(uint32_t ggml_type_id) {
    for (const DTypeInfo& i : kTable) {
        if (static_cast<uint32_t>(i.type) == ggml_type_id) return &i;
    }
    return nullptr;
}

const DTypeInfo& dtype_info(DType t) {
    const DTypeInfo* i = dtype_info(static_cast<uint32_t>(t));
    DG_CHECK(i != nullptr, "DType %u has no table entry", static_cast<uint32_t>(t));
    return *i;
}

absl::StatusOr<DType> dtype_from_name(std::string_view name) {
    std::string lower(name);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const DTypeInfo& i : kTable) {
        if (lower == i.name) return i.type;
    }
    return absl::InvalidArgumentError(absl::StrFormat(
        "unknown dtype '%s' (expected f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q5_k or q6_k)", name));
}

absl::StatusOr<uint64_t> row_bytes(DType t, int64_t n) {
    const DTypeInfo& info = dtype_info(t);
    if (n < 0) return absl::InvalidArgumentError(absl::StrFormat("%s: negative element count %d", info.name, n));
    if (n % info.block_elems != 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: row of %d elements is not a multiple of the block size %d", info.name, n, info.block_elems));
    }
    uint64_t bytes;
    if (__builtin_mul_overflow(static_cast<uint64_t>(n / info.block_elems),
                               static_cast<uint64_t>(info.block_bytes), &bytes)) {
        return absl::InvalidArgumentError(absl::StrFormat("%s: row of %d elements overflows", info.name, n));
    }
    return bytes;
}

float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) return float_of(sign | 0x7f800000u | (mant << 13));  // inf / NaN (payload kept)
    if (exp != 0) return float_of(sign | ((exp + 112) << 23) | (mant << 13));
    // Zero or subnormal: mant * 2^-24 is exact in f32.
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return float_of(sign | bits_of(v));
}

uint16_t f32_to_f16(float f) {
    uint32_t x = bits_of(f);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) return sign | 0x7e00 | static_cast<uint16_t>((x >> 13) & 0x1ff);  // NaN stays NaN
    // 65520 is the midpoint between 65504 (max half, odd mantissa) and 65536: ties-to-even gives inf.
    if (x >= 0x477ff000u) return sign | 0x7c00;
    if (x < 0x38800000u) {
        // Result is subnormal (or zero): round mant * 2^(e-126) to an integer, ties to even.
        const uint32_t e = x >> 23;
        const uint32_t shift = 126 - e;  // >= 14 here (e <= 112)
        if (shift > 24) return sign;
        const uint32_t mant = (x & 0x7fffffu) | 0x800000u;
        uint32_t q = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) ++q;
        return sign | static_cast<uint16_t>(q);
    }
    // Normal: rebias the exponent and round away the low 13 bits (a carry may bump the exponent).
    x -= 112u << 23;
    x += 0xfffu + ((x >> 13) & 1);
    return sign | static_cast<uint16_t>(x >> 13);
}

float bf16_to_f32(uint16_t h) { return float_of(static_cast<uint32_t>(h) << 16); }

uint16_t f32_to_bf16(float f) {
    const uint32_t x = bits_of(f);
    // Truncating a NaN could leave an all-zero mantissa (= inf): force the quiet bit.
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);
    return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

}  // namespace dg
