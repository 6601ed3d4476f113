// The fast backend's elementwise replacements against the oracle's ops: gdn_conv_fast (AVX-512 conv +
// SiLU with exp512) against gdn_conv, swiglu_fast against swiglu, and exp512 itself against std::exp
// over the whole range the model feeds it (underflow to 0 and overflow to inf included).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "engine/cpu/exp_avx512.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/quant_dot.h"

namespace dg {
namespace {

bool have_avx512() { return cpu::best_quant_isa() == cpu::QuantIsa::kAvx512Vnni; }

__attribute__((target("avx512f"))) void exp16(const float* x, float* y) {
    _mm512_storeu_ps(y, cpu::exp512(_mm512_loadu_ps(x)));
}

TEST(CpuFastOps, Exp512AgainstStdExp) {
    if (!have_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU: the fast ops fall back to the oracle's";
    std::vector<float> x;
    for (float v = -110.f; v <= 90.f; v += 0.0137f) x.push_back(v);
    x.resize((x.size() + 15) / 16 * 16, 0.f);
    std::vector<float> y(x.size());
    for (size_t i = 0; i < x.size(); i += 16) exp16(&x[i], &y[i]);
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        const double want = std::exp(double(x[i]));
        if (want > 3.4e38) {
            EXPECT_TRUE(std::isinf(y[i])) << x[i];
        } else if (want < 1e-38) {  // denormal range: absolute error only
            EXPECT_NEAR(y[i], want, 1e-44) << x[i];
        } else {
            worst = std::max(worst, std::fabs(y[i] - want) / want);
        }
    }
    std::printf("exp512: worst relative error %.2e over [-110, 90] (normal results)\n", worst);
    EXPECT_LT(worst, 5e-7);
}

TEST(CpuFastOps, ConvAndSwigluAgainstTheOracle) {
    std::mt19937 rng(4);
    std::normal_distribution<float> nd;
    const GdnDims d{2, 4, 16, 16, 4, 96};  // conv_dim 96: six vectors of 16 channels
    std::vector<float> w(d.conv_dim * d.K);
    for (auto& e : w) e = 0.5f * nd(rng);
    std::vector<float> st_exact((d.K - 1) * d.conv_dim, 0.f), st_fast = st_exact;
    double worst = 0;
    for (int32_t len : {5, 70, 1, 1, 33}) {  // prefill, decode and prefill again on the carried state
        std::vector<float> u(size_t(len) * d.conv_dim);
        for (auto& e : u) e = nd(rng);
        std::vector<float> ue = u, uf = u;
        cpu::gdn_conv(ue.data(), len, d, w.data(), st_exact.data());
        cpu::gdn_conv_fast(uf.data(), len, d, w.data(), st_fast.data());
        for (size_t i = 0; i < ue.size(); ++i) worst = std::max(worst, double(std::fabs(uf[i] - ue[i])));
        ASSERT_EQ(st_fast, st_exact) << "len " << len;  // the state is a copy of inputs: exact
    }
    std::printf("gdn_conv_fast vs gdn_conv: worst absolute error %.2e\n", worst);
    EXPECT_LT(worst, 1e-5);  // f32 FMA order and exp512 (5e-7 relative) on O(1) values

    std::vector<float> g(1000), up(1000);
    for (auto& e : g) e = 4.f * nd(rng);
    for (auto& e : up) e = nd(rng);
    std::vector<float> ye(g.size()), yf(g.size());
    cpu::swiglu(g.data(), up.data(), int64_t(g.size()), ye.data());
    cpu::swiglu_fast(g.data(), up.data(), int64_t(g.size()), yf.data());
    double worst_s = 0;
    for (size_t i = 0; i < ye.size(); ++i) worst_s = std::max(worst_s, double(std::fabs(yf[i] - ye[i])) / (1e-3 + std::fabs(ye[i])));
    std::printf("swiglu_fast vs swiglu: worst relative error %.2e\n", worst_s);
    EXPECT_LT(worst_s, 2e-6);
}

}  // namespace
}  // namespace dg
