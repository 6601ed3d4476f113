// exp(x) in double with the same bits on the host and on a GPU: the sampler's probabilities
// (engine/sampling.cpp on the host, engine/cuda/sampling.cu on the device) go through it, so a seeded
// request draws the same token on both. libm's exp and CUDA's exp are each within an ulp of e^x but need
// not round alike; this one is written only with IEEE-rounded + and × in a fixed order (on the device
// the explicitly rounded __dadd_rn/__dmul_rn, which nvcc never fuses into an FMA; the host build targets
// x86-64-v2, which has no FMA to contract into), rint and an exact ldexp.
//
// Method: x = k·ln2 + r with |r| ≤ ln2/2 (Cody–Waite split of ln2: k·ln2_hi is exact), e^r by its Taylor
// series to degree 13 in Horner form (truncation < 2⁻⁵⁷ relative), then × 2^k. Error: a few ulp, which
// sampling does not notice. Tests: tests/unit/scheduler/pools_test.cpp (DetExp.*).
#pragma once

#include <cmath>

#include "engine/philox.h"  // DG_HOST_DEVICE

namespace dg {

#if defined(__CUDA_ARCH__)
#define DG_DADD(a, b) __dadd_rn(a, b)
#define DG_DMUL(a, b) __dmul_rn(a, b)
#else
#define DG_DADD(a, b) ((a) + (b))
#define DG_DMUL(a, b) ((a) * (b))
#endif

DG_HOST_DEVICE inline double det_exp(double x) {
    if (x != x) return x;                      // NaN
    if (x > 709.78) return INFINITY;
    if (x < -745.2) return 0.0;                // below half the smallest subnormal
    constexpr double kInvLn2 = 0x1.71547652b82fep+0;
    constexpr double kLn2Hi = 0x1.62e42fee00000p-1;  // low 21 bits zero: k·kLn2Hi is exact for |k| < 2^21
    constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;
    const double k = rint(DG_DMUL(x, kInvLn2));
    const double r = DG_DADD(DG_DADD(x, -DG_DMUL(k, kLn2Hi)), -DG_DMUL(k, kLn2Lo));
    constexpr double kInvFact[14] = {0x1.0p+0,           0x1.0p+0,           0x1.0p-1,
                                     0x1.5555555555555p-3, 0x1.5555555555555p-5, 0x1.1111111111111p-7,
                                     0x1.6c16c16c16c17p-10, 0x1.a01a01a01a01ap-13, 0x1.a01a01a01a01ap-16,
                                     0x1.71de3a556c734p-19, 0x1.27e4fb7789f5cp-22, 0x1.ae64567f544e4p-26,
                                     0x1.1eed8eff8d898p-29, 0x1.6124613a86d09p-33};
    double p = kInvFact[13];
    for (int i = 12; i >= 0; --i) p = DG_DADD(DG_DMUL(p, r), kInvFact[i]);
    return ldexp(p, int(k));
}

#undef DG_DADD
#undef DG_DMUL

}  // namespace dg
