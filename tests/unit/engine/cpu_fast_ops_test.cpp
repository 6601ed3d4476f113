// The fast backend's elementwise replacements against the oracle's ops: gdn_conv_fast (AVX-512 conv +
// SiLU with exp512) against gdn_conv, swiglu_fast against swiglu, and exp512 itself against std::exp
// over the whole range the model feeds it (underflow to 0 and overflow to inf included), the mixer's gated
// RMSNorm (gdn_gated_rmsnorm_fast) against gdn_gated_rmsnorm, and the fast
// attention (AVX-512 softmax rows, attention_row.h) against the oracle's scalar loops.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "engine/cpu/attention_row.h"
#include "engine/cpu/exp_avx512.h"
#include "engine/weights.h"
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
        cpu::gdn_conv_fast(uf.data(), len, d, w.data(), cpu::conv_taps_major(w.data(), d.conv_dim, d.K).data(),
                           st_fast.data());
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

TEST(CpuFastOps, GatedRmsnormAgainstTheOracle) {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    for (int64_t dv : {128, 24}) {  // 24: the fast form falls back to the oracle's
        const int64_t rows = 100;   // more than parallel_for's chunk of 64: both threads' ranges
        std::vector<float> o(rows * dv), z(rows * dv), w(dv);
        for (auto& e : o) e = 3.f * nd(rng);
        for (auto& e : z) e = 4.f * nd(rng);
        for (auto& e : w) e = 1.f + 0.2f * nd(rng);
        std::vector<float> oe = o, of = o;
        cpu::gdn_gated_rmsnorm(oe.data(), z.data(), rows, dv, w.data(), 1e-6f);
        cpu::gdn_gated_rmsnorm_fast(of.data(), z.data(), rows, dv, w.data(), 1e-6f);
        double worst = 0;
        for (size_t i = 0; i < oe.size(); ++i) worst = std::max(worst, double(std::fabs(of[i] - oe[i])) / (1e-3 + std::fabs(oe[i])));
        std::printf("gdn_gated_rmsnorm_fast vs the oracle (dv %ld): worst relative error %.2e\n", long(dv), worst);
        EXPECT_LT(worst, 2e-6) << "dv " << dv;
    }
}

// Two sequences in one step (a 37-token prefill on 20 cached tokens, and one decode token at position 70),
// GQA 4:1 and 6:1 (the 27B's: the kernels take a group of 4 query heads, then one of 2), blocks of 16 tokens.
// An f16 cache with head dim 48 (three 16-lane vectors: the kernels' partial register groups), and a q8_0
// cache with head dim 64 (the decode token then takes the dequantise-first path too: no in-place kernel
// for quantised caches). Each step writes its K/V and attends over everything before, so the fast and the
// oracle backends each get their own cache. The outputs agree to f32 rounding (summation order, the
// vector exp's 1e-7, one division instead of one per key).
class CpuFastAttention : public ::testing::TestWithParam<int64_t> {};

TEST_P(CpuFastAttention, AgainstTheOracle) {
    if (!cpu::attend_group_fast(48)) GTEST_SKIP() << "no AVX-512 on this CPU: attention keeps the oracle's loops";
    std::mt19937 rng(9);
    std::normal_distribution<float> nd;
    for (const auto& [kv_type, hd] : {std::pair{DType::F16, int64_t(48)}, std::pair{DType::Q8_0, int64_t(64)}}) {
        const AttnDims d{2 * GetParam(), 2, hd, 32, 10000.f};
        AttnWeights w;
        for (int64_t j = 0; j < d.hd; ++j) w.q_norm.push_back(1.f + 0.1f * nd(rng)), w.k_norm.push_back(1.f + 0.1f * nd(rng));
        const int32_t block_tokens = 16, n_blocks = 8;
        const int64_t rb = int64_t(*row_bytes(kv_type, d.hd));
        std::vector<uint8_t> k_fast(size_t(n_blocks) * block_tokens * d.Hkv * rb), v_fast = k_fast;
        std::vector<uint8_t> k_exact = k_fast, v_exact = k_fast;
        const cpu::KvLayer kv_fast{kv_type, block_tokens, rb, k_fast.data(), v_fast.data()};
        const cpu::KvLayer kv_exact{kv_type, block_tokens, rb, k_exact.data(), v_exact.data()};
        const std::vector<int32_t> blocks_a = {3, 0, 5, 1}, blocks_b = {2, 4, 6, 7, 0};  // b's block 0 unused past 70
        // Step 1: prefill a (20 tokens) and b (70 tokens); step 2: a's next 37 tokens and b's decode token.
        struct Step { int32_t a_pos0, a_len, b_pos0, b_len; };
        double worst = 0, mag = 0;
        for (const Step st : {Step{0, 20, 0, 70}, Step{20, 37, 70, 1}}) {
            StepBatch b;
            b.seqs.push_back(SeqSlice{0, st.a_len, st.a_pos0, 0, blocks_a.data(), int32_t(blocks_a.size())});
            b.seqs.push_back(SeqSlice{st.a_len, st.b_len, st.b_pos0, 1, blocks_b.data(), 4});
            const int32_t n = st.a_len + st.b_len;
            b.tokens.assign(n, 0);
            std::vector<float> qg(size_t(n) * d.Hq * 2 * d.hd), k(size_t(n) * d.Hkv * d.hd), v(k.size());
            for (auto* vec : {&qg, &k, &v})
                for (auto& e : *vec) e = nd(rng);
            std::vector<float> out_exact(size_t(n) * d.Hq * d.hd), out_fast(out_exact.size());
            cpu::attention(b, d, w, 1e-6f, qg.data(), k.data(), v.data(), out_exact.data(), kv_exact, /*fast=*/false);
            cpu::attention(b, d, w, 1e-6f, qg.data(), k.data(), v.data(), out_fast.data(), kv_fast, /*fast=*/true);
            EXPECT_EQ(k_fast, k_exact);  // the K/V store is the same code on both paths
            for (size_t i = 0; i < out_exact.size(); ++i) {
                ASSERT_TRUE(std::isfinite(out_fast[i])) << i;
                worst = std::max(worst, double(std::fabs(out_fast[i] - out_exact[i])));
                mag = std::max(mag, double(std::fabs(out_exact[i])));
            }
        }
        std::printf("attention fast vs oracle, %s cache, GQA %ld:1: worst absolute difference %.2e (largest output %.2f)\n",
                    dtype_info(kv_type).name, long(GetParam()), worst, mag);
        EXPECT_GT(mag, 0.1);
        EXPECT_LT(worst, 2e-6 * mag) << dtype_info(kv_type).name;
    }
}
INSTANTIATE_TEST_SUITE_P(Gqa, CpuFastAttention, ::testing::Values(int64_t(4), int64_t(6)));

// Decode over a long history, the fast path reading the cache rows in place: decode tokens attend to 127,
// 128, 129, 301 and 302 keys after prefills, in a cache of 16-token blocks in shuffled order. GQA 4:1 and
// 6:1, head dims 48 (partial register groups) and 256 (the 0.8B's and 27B's), f16 and bf16 caches.
// Against the oracle backend on its own cache.
TEST(CpuFastAttentionDecode, LongHistoryAgainstTheOracle) {
    if (!cpu::attend_group_fast(48)) GTEST_SKIP() << "no AVX-512 on this CPU: attention keeps the oracle's loops";
    std::mt19937 rng(21);
    std::normal_distribution<float> nd;
    for (DType kv_type : {DType::F16, DType::BF16})
        for (int64_t gqa : {int64_t(4), int64_t(6)})
            for (int64_t hd : {int64_t(48), int64_t(256)}) {
                const AttnDims d{2 * gqa, 2, hd, 32, 10000.f};
                AttnWeights w;
                for (int64_t j = 0; j < hd; ++j) w.q_norm.push_back(1.f + 0.1f * nd(rng)), w.k_norm.push_back(1.f + 0.1f * nd(rng));
                const int32_t block_tokens = 16, n_blocks = 19;
                const int64_t row_bytes = hd * 2;
                std::vector<int32_t> blocks(n_blocks);
                for (int32_t i = 0; i < n_blocks; ++i) blocks[size_t(i)] = (i * 7) % n_blocks;  // 7 is prime to 19
                std::vector<uint8_t> k_fast(size_t(n_blocks) * block_tokens * d.Hkv * row_bytes), v_fast = k_fast;
                std::vector<uint8_t> k_exact = k_fast, v_exact = k_fast;
                const cpu::KvLayer kv_fast{kv_type, block_tokens, row_bytes, k_fast.data(), v_fast.data()};
                const cpu::KvLayer kv_exact{kv_type, block_tokens, row_bytes, k_exact.data(), v_exact.data()};
                struct Step { int32_t pos0, len; };
                double worst = 0, mag = 0;
                for (const Step st : {Step{0, 126}, Step{126, 1}, Step{127, 1}, Step{128, 1}, Step{129, 171}, Step{300, 1},
                                      Step{301, 1}}) {
                    StepBatch b;
                    b.seqs.push_back(SeqSlice{0, st.len, st.pos0, 0, blocks.data(), n_blocks});
                    b.tokens.assign(size_t(st.len), 0);
                    std::vector<float> qg(size_t(st.len) * d.Hq * 2 * hd), k(size_t(st.len) * d.Hkv * hd), v(k.size());
                    for (auto* vec : {&qg, &k, &v})
                        for (auto& e : *vec) e = nd(rng);
                    std::vector<float> out_exact(size_t(st.len) * d.Hq * hd), out_fast(out_exact.size());
                    cpu::attention(b, d, w, 1e-6f, qg.data(), k.data(), v.data(), out_exact.data(), kv_exact, false);
                    cpu::attention(b, d, w, 1e-6f, qg.data(), k.data(), v.data(), out_fast.data(), kv_fast, true);
                    if (st.len != 1) continue;  // the prefills fill the caches; the decode steps are checked
                    for (size_t i = 0; i < out_exact.size(); ++i) {
                        ASSERT_TRUE(std::isfinite(out_fast[i])) << i;
                        worst = std::max(worst, double(std::fabs(out_fast[i] - out_exact[i])));
                        mag = std::max(mag, double(std::fabs(out_exact[i])));
                    }
                }
                std::printf("decode attention over a long history vs oracle, %s cache, GQA %ld:1, head dim %ld: worst absolute "
                            "difference %.2e (largest output %.2f)\n",
                            dtype_info(kv_type).name, long(gqa), long(hd), worst, mag);
                EXPECT_GT(mag, 0.05);
                EXPECT_LT(worst, 2e-6 * mag) << dtype_info(kv_type).name << " GQA " << gqa << " hd " << hd;
            }
}

}  // namespace
}  // namespace dg
