// Emulated <cuda_fp16.h>: __half as its 16 bits, converted with the engine's own f16 routines
// (engine/formats/dtype.h: round to nearest even), so emulated kernels and the CPU backend agree bit
// for bit on every conversion.
#pragma once

#include <cstdint>

#include "engine/formats/dtype.h"

struct __half {
    uint16_t bits;
};
inline float __half2float(__half h) { return dg::f16_to_f32(h.bits); }
inline __half __float2half(float f) { return __half{dg::f32_to_f16(f)}; }
inline __half __float2half_rn(float f) { return __half{dg::f32_to_f16(f)}; }
inline __half __ushort_as_half(unsigned short u) { return __half{uint16_t(u)}; }
inline unsigned short __half_as_ushort(__half h) { return h.bits; }
inline float __low2float(__half h) { return __half2float(h); }
