// dequantize_row and dot_row: the row readers used by loaders and by the CPU matmul.
// dot_row dequantises one block into a stack buffer and multiplies it with x using independent
// accumulators, which the compiler turns into SIMD (a single f32 accumulator would serialise the adds).
#include <cstdint>
#include <cstring>

#include "engine/formats/dtype.h"
#include "engine/formats/quant_blocks.h"
#include "engine/status.h"

namespace dg {

namespace {

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn block_fn(DType t) {
    switch (t) {
        case DType::Q4_0: return qb::dequant_q4_0;
        case DType::Q4_1: return qb::dequant_q4_1;
        case DType::Q8_0: return qb::dequant_q8_0;
        case DType::Q4_K: return qb::dequant_q4_k;
        case DType::Q5_K: return qb::dequant_q5_k;
        case DType::Q6_K: return qb::dequant_q6_k;
        default: return nullptr;
    }
}

// n is a multiple of 16 (all block sizes are).
inline float dot_f32_16(const float* a, const float* b, int64_t n) {
    float acc[16] = {};
    for (int64_t i = 0; i < n; i += 16) {
        for (int k = 0; k < 16; ++k) acc[k] += a[i + k] * b[i + k];
    }
    float s = 0.0f;
    for (int k = 0; k < 16; ++k) s += acc[k];
    return s;
}

// Any n: the body in steps of 16, then the tail.
inline float dot_f32_any(const float* a, const float* b, int64_t n) {
    const int64_t body = n & ~int64_t{15};
    float s = dot_f32_16(a, b, body);
    for (int64_t i = body; i < n; ++i) s += a[i] * b[i];
    return s;
}

// The same block-wise dequantise-and-dot for every quantised type; the block function is inlined
// per instantiation.
template <void (*Dequant)(const uint8_t*, float*), int kElems, int kBytes>
float dot_blocks(const uint8_t* row, const float* x, int64_t n) {
    alignas(64) float buf[kElems];
    float s = 0.0f;
    for (int64_t i = 0; i < n; i += kElems) {
        Dequant(row, buf);
        s += dot_f32_16(buf, x + i, kElems);
        row += kBytes;
    }
    return s;
}

// Q8_0 and Q4_0 keep the scale out of the inner loop: d * sum(q * x).
float dot_q8_0(const uint8_t* row, const float* x, int64_t n) {
    alignas(64) float q[32];
    float s = 0.0f;
    for (int64_t i = 0; i < n; i += 32) {
        const int8_t* qs = reinterpret_cast<const int8_t*>(row + qb::kQ8_0_Qs);
        for (int j = 0; j < 32; ++j) q[j] = static_cast<float>(qs[j]);
        s += qb::load_f16(row) * dot_f32_16(q, x + i, 32);
        row += 34;
    }
    return s;
}

float dot_q4_0(const uint8_t* row, const float* x, int64_t n) {
    alignas(64) float q[32];
    float s = 0.0f;
    for (int64_t i = 0; i < n; i += 32) {
        const uint8_t* qs = row + qb::kQ4_0_Qs;
        for (int j = 0; j < 16; ++j) {
            q[j] = static_cast<float>((qs[j] & 0xF) - 8);
            q[j + 16] = static_cast<float>((qs[j] >> 4) - 8);
        }
        s += qb::load_f16(row) * dot_f32_16(q, x + i, 32);
        row += 18;
    }
    return s;
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
    const auto* p = static_cast<const uint8_t*>(src);
    switch (t) {
        case DType::F32:
            if (n > 0) std::memcpy(dst, p, static_cast<size_t>(n) * 4);
            return;
        case DType::F16: {
            for (int64_t i = 0; i < n; ++i) dst[i] = qb::f16_to_f32_fast(qb::load_u16(p + 2 * i));
            return;
        }
        case DType::BF16:
            for (int64_t i = 0; i < n; ++i) dst[i] = qb::bf16_to_f32_fast(qb::load_u16(p + 2 * i));
            return;
        default:
            break;
    }
    const DTypeInfo& info = dtype_info(t);
    DG_CHECK(n % info.block_elems == 0, "dequantize_row: %d elements of %s", n, info.name);
    const BlockFn fn = block_fn(t);
    for (int64_t i = 0; i < n; i += info.block_elems) {
        fn(p, dst + i);
        p += info.block_bytes;
    }
}

float dot_row(DType t, const void* row, const float* x, int64_t n) {
    const auto* p = static_cast<const uint8_t*>(row);
    if (t != DType::F32 && t != DType::F16 && t != DType::BF16) {
        const DTypeInfo& info = dtype_info(t);
        DG_CHECK(n % info.block_elems == 0, "dot_row: %d elements of %s", n, info.name);
    }
    switch (t) {
        case DType::F32:
            if (reinterpret_cast<uintptr_t>(p) % alignof(float) == 0) {
                return dot_f32_any(reinterpret_cast<const float*>(p), x, n);
            }
            [[fallthrough]];  // a hostile safetensors header can misalign data: copy through a buffer
        case DType::F16:
        case DType::BF16: {
            // Convert 256 at a time into a stack buffer, then the f32 kernel.
            alignas(64) float buf[256];
            float s = 0.0f;
            for (int64_t i = 0; i < n; i += 256) {
                const int64_t m = n - i < 256 ? n - i : 256;
                if (t == DType::F32) {
                    std::memcpy(buf, p + 4 * i, static_cast<size_t>(m) * 4);
                } else if (t == DType::F16) {
                    for (int64_t j = 0; j < m; ++j) buf[j] = qb::f16_to_f32_fast(qb::load_u16(p + 2 * (i + j)));
                } else {
                    for (int64_t j = 0; j < m; ++j) buf[j] = qb::bf16_to_f32_fast(qb::load_u16(p + 2 * (i + j)));
                }
                s += dot_f32_any(buf, x + i, m);
            }
            return s;
        }
        case DType::Q8_0: return dot_q8_0(p, x, n);
        case DType::Q4_0: return dot_q4_0(p, x, n);
        case DType::Q4_1: return dot_blocks<qb::dequant_q4_1, 32, 20>(p, x, n);
        case DType::Q4_K: return dot_blocks<qb::dequant_q4_k, 256, 144>(p, x, n);
        case DType::Q5_K: return dot_blocks<qb::dequant_q5_k, 256, 176>(p, x, n);
        case DType::Q6_K: return dot_blocks<qb::dequant_q6_k, 256, 210>(p, x, n);
    }
    DG_CHECK(false, "dot_row: bad dtype %u", static_cast<uint32_t>(t));
    return 0.0f;
}

}  // namespace dg
