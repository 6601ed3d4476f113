// The two forms of the gated delta rule (recurrent for decode, chunked WY/UT for prefill) agree on
// random inputs: lengths around the chunk size, slow to fast decay, zero and non-zero initial state.
// The fast backend's chunked and recurrent forms (gdn_chunked_head_fast, gdn_recurrent_head_fast) are held
// to the same bounds.
// Also checked against a third, explicit-matrix form S = a(I - b k kᵀ)S + b k vᵀ written independently.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/cpu/ops.h"

namespace dg {
namespace {

struct Inputs {
    int32_t len;
    int64_t dk, dv;
    std::vector<float> q, k, v, g, beta, S0;
};

Inputs make(int32_t len, int64_t dk, int64_t dv, float gmin, float gmax, bool state, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n01;
    std::uniform_real_distribution<float> ug(gmin, gmax), ub(0.f, 1.f);
    Inputs in{len, dk, dv, {}, {}, {}, {}, {}, {}};
    auto unit = [&](std::vector<float>& x, float scale) {  // L2-normalised rows, as the mixer feeds them
        for (int32_t t = 0; t < len; ++t) {
            float ss = 0;
            std::vector<float> r(dk);
            for (auto& e : r) {
                e = n01(rng);
                ss += e * e;
            }
            for (auto e : r) x.push_back(e / std::sqrt(ss) * scale);
        }
    };
    unit(in.q, 1.f / std::sqrt(float(dk)));
    unit(in.k, 1.f);
    for (int64_t i = 0; i < len * dv; ++i) in.v.push_back(n01(rng));
    for (int32_t t = 0; t < len; ++t) in.g.push_back(ug(rng)), in.beta.push_back(ub(rng));
    in.S0.assign(dk * dv, 0.f);
    if (state)
        for (auto& e : in.S0) e = 0.3f * n01(rng);
    return in;
}

// Explicit-matrix recurrence, double precision.
void explicit_form(const Inputs& in, std::vector<double>& S, std::vector<double>& o) {
    const int64_t dk = in.dk, dv = in.dv;
    S.assign(in.S0.begin(), in.S0.end());
    o.assign(in.len * dv, 0);
    for (int32_t t = 0; t < in.len; ++t) {
        const float* k = &in.k[t * dk];
        const double a = std::exp(double(in.g[t])), b = in.beta[t];
        std::vector<double> kS(dv, 0);  // kᵀ S
        for (int64_t i = 0; i < dk; ++i)
            for (int64_t j = 0; j < dv; ++j) kS[j] += k[i] * S[i * dv + j];
        for (int64_t i = 0; i < dk; ++i)
            for (int64_t j = 0; j < dv; ++j)
                S[i * dv + j] = a * (S[i * dv + j] - b * k[i] * kS[j]) + b * k[i] * in.v[t * dv + j];
        for (int64_t i = 0; i < dk; ++i)
            for (int64_t j = 0; j < dv; ++j) o[t * dv + j] += in.q[t * dk + i] * S[i * dv + j];
    }
}

struct Case {
    int32_t len;
    float gmin, gmax;
    bool state;
};

class GdnFormsTest : public ::testing::TestWithParam<Case> {};

TEST_P(GdnFormsTest, RecurrentChunkedAndExplicitAgree) {
    const Case c = GetParam();
    // {16, 24}: the fast forms fall back to the oracle's (dv not a multiple of 16); the others run their
    // AVX-512 code where the CPU has it ({64, 128}: the model's dv, the recurrent form's widest blocks).
    for (auto [dk, dv] : {std::pair<int64_t, int64_t>{16, 24}, {32, 32}, {16, 48}, {64, 128}}) {
        Inputs in = make(c.len, dk, dv, c.gmin, c.gmax, c.state, 1234 + c.len);
        // Rows laid out as the mixer's conv output: [q (dk) | k (dk) | v (dv)] per token.
        const int64_t row = 2 * dk + dv;
        std::vector<float> qkv(c.len * row);
        for (int32_t t = 0; t < c.len; ++t) {
            std::copy_n(&in.q[t * dk], dk, &qkv[t * row]);
            std::copy_n(&in.k[t * dk], dk, &qkv[t * row + dk]);
            std::copy_n(&in.v[t * dv], dv, &qkv[t * row + 2 * dk]);
        }
        const cpu::GdnStrides st{row, dv};
        std::vector<float> S1 = in.S0, S2 = in.S0, S3 = in.S0, S4 = in.S0;
        std::vector<float> o1(c.len * dv), o2(c.len * dv), o3(c.len * dv), o4(c.len * dv);
        cpu::gdn_recurrent_head(&qkv[0], &qkv[dk], &qkv[2 * dk], st, in.g.data(), in.beta.data(), c.len, dk, dv,
                                S1.data(), o1.data());
        cpu::gdn_chunked_head(&qkv[0], &qkv[dk], &qkv[2 * dk], st, in.g.data(), in.beta.data(), c.len, dk, dv,
                              S2.data(), o2.data());
        cpu::gdn_chunked_head_fast(&qkv[0], &qkv[dk], &qkv[2 * dk], st, in.g.data(), in.beta.data(), c.len, dk, dv,
                                   S3.data(), o3.data());
        cpu::gdn_recurrent_head_fast(&qkv[0], &qkv[dk], &qkv[2 * dk], st, in.g.data(), in.beta.data(), c.len, dk, dv,
                                     S4.data(), o4.data());
        std::vector<double> Se, oe;
        explicit_form(in, Se, oe);
        double max_o = 0, max_s = 0, scale = 1e-6;
        for (size_t i = 0; i < oe.size(); ++i) scale = std::max(scale, std::abs(oe[i]));
        for (size_t i = 0; i < oe.size(); ++i) {
            max_o = std::max(max_o, std::abs(o1[i] - oe[i]));
            max_o = std::max(max_o, std::abs(o2[i] - oe[i]));
            max_o = std::max(max_o, std::abs(o3[i] - oe[i]));
            max_o = std::max(max_o, std::abs(o4[i] - oe[i]));
        }
        for (size_t i = 0; i < Se.size(); ++i) {
            max_s = std::max(max_s, std::abs(S1[i] - Se[i]));
            max_s = std::max(max_s, std::abs(S2[i] - Se[i]));
            max_s = std::max(max_s, std::abs(S3[i] - Se[i]));
            max_s = std::max(max_s, std::abs(S4[i] - Se[i]));
        }
        // std::max drops NaNs: check them separately.
        for (const auto* x : {&o1, &o2, &o3, &o4, &S1, &S2, &S3, &S4})
            for (float e : *x) ASSERT_TRUE(std::isfinite(e)) << "len " << c.len << " dk " << dk;
        EXPECT_LT(max_o / scale, 2e-5) << "len " << c.len << " dk " << dk;
        EXPECT_LT(max_s, 2e-5) << "len " << c.len << " dk " << dk;
    }
}

INSTANTIATE_TEST_SUITE_P(Lengths, GdnFormsTest,
                         ::testing::Values(Case{1, -0.1f, -0.01f, true}, Case{5, -2.f, -0.01f, false},
                                           Case{63, -0.05f, -1e-4f, true}, Case{64, -5.f, -1.f, true},
                                           Case{65, -1.f, -0.01f, false}, Case{130, -0.5f, -1e-3f, true},
                                           Case{200, -20.f, -1e-4f, true}));

}  // namespace
}  // namespace dg
