// KV cache storage types (f16, bf16, q8_0, q4_0 in GGUF block layout) against the golden logits. The
// reference keeps K/V in f32, so each type's rounding shows up as a bounded logit error; bounds are
// relative to the logit std and grow as the type gets coarser.
#include <gtest/gtest.h>

#include "engine/runner.h"
#include "tests/unit/engine/fixtures.h"

namespace dg {
namespace {

TEST(KvTypesTest, EveryKvTypeStaysCloseToReference) {
    auto g = testing::load_golden("dense");
    const auto& c = g.cases.back();  // 150 tokens: attention over a long span
    for (auto [type, tol] : std::vector<std::pair<DType, double>>{
             {DType::F32, 1e-3}, {DType::F16, 5e-3}, {DType::BF16, 3e-2}, {DType::Q8_0, 3e-2}, {DType::Q4_0, 0.25}}) {
        RunnerOptions opt;
        opt.kv_type = type;
        auto r = Runner::open(testing::fixture_dir("dense") + "/hf", BackendKind::kCpuExact, opt);
        ASSERT_TRUE(r.ok()) << r.status();
        auto s = (*r)->new_sequence();
        auto l = (*r)->feed(*s, c.tokens, true);
        ASSERT_TRUE(l.ok()) << l.status();
        auto d = testing::compare(*l, c.logits, c.vocab, 1e9);
        EXPECT_LT(d.rel(), tol) << dtype_info(type).name << ": max |Δ| " << d.max_abs;
    }
}

// The quantised KV types need head_dim to be a multiple of their block size (32): a clear error.
TEST(KvTypesTest, IncompatibleKvTypeIsAClearError) {
    RunnerOptions opt;
    opt.kv_type = DType::Q4_K;  // 256-value blocks: head_dim 32 cannot hold one
    auto r = Runner::open(testing::fixture_dir("dense") + "/hf", BackendKind::kCpuExact, opt);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(std::string(r.status().message()).find("KV cache type q4_k"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace dg
