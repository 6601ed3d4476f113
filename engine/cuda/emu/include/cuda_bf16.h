// Emulated <cuda_bf16.h>: __nv_bfloat16 as its 16 bits, converted with the engine's own bf16 routines
// (engine/formats/dtype.h: round to nearest even, NaN kept NaN).
#pragma once

#include <cstdint>

#include "engine/formats/dtype.h"

struct __nv_bfloat16 {
    uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 h) { return dg::bf16_to_f32(h.bits); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16{dg::f32_to_bf16(f)}; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{dg::f32_to_bf16(f)}; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16{uint16_t(u)}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.bits; }
