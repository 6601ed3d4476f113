// The CPU forward pass against golden logits from an independent reference (tests/golden/), through
// both file formats: HF safetensors (grouped heads, converted at load) and GGUF written by the
// reference's own converter (tiled heads, 1+w norms, ssm_a).
//
// Tolerance: the reference computes in float32 from the same weights, so the only differences are
// summation order and exp/pow ulps: max |Δlogit| ≤ 1e-3 × std(logits) (the README's "an fp32 engine
// should match to about 1e-3"). The GGUF copies store f16 matrices converted from bf16 (exact for
// these magnitudes) with f32 norms/vectors, so the same bound holds.
#include <gtest/gtest.h>

#include "engine/runner.h"
#include "tests/unit/engine/fixtures.h"

namespace dg {
namespace {

using testing::compare;
using testing::fixture_dir;
using testing::load_golden;

constexpr double kRelTol = 1e-3;

struct Param {
    std::string fixture;
    std::string file;  // "hf" or "model-f16.gguf"
};

class GoldenTest : public ::testing::TestWithParam<Param> {
protected:
    std::unique_ptr<Runner> open(RunnerOptions opt = {}) {
        opt.kv_type = opt.kv_type == DType::F16 ? DType::F32 : opt.kv_type;  // exact KV unless asked
        auto r = Runner::open(fixture_dir(GetParam().fixture) + "/" + GetParam().file, BackendKind::kCpuExact, opt);
        EXPECT_TRUE(r.ok()) << r.status();
        return r.ok() ? std::move(*r) : nullptr;
    }
};

TEST_P(GoldenTest, AllPositionsMatchReference) {
    auto g = load_golden(GetParam().fixture);
    auto r = open();
    ASSERT_TRUE(r);
    for (const auto& c : g.cases) {
        auto seq = r->new_sequence();
        ASSERT_TRUE(seq.ok());
        auto logits = r->feed(*seq, c.tokens, /*all_logits=*/true);
        ASSERT_TRUE(logits.ok()) << logits.status();
        auto d = compare(*logits, c.logits, c.vocab);
        EXPECT_LT(d.rel(), kRelTol) << c.tokens.size() << " tokens: max |Δ| " << d.max_abs << " scale " << d.scale;
        EXPECT_EQ(d.argmax_mismatch, 0);
        r->release(*seq);
    }
}

// Running A then B from the saved state gives the logits of A+B at once, across chunk boundaries and
// decode steps, with chunked prefill splitting the input further.
TEST_P(GoldenTest, SplitContinuationMatchesFullRun) {
    auto g = load_golden(GetParam().fixture);
    const auto& c = g.cases.back();  // 150 tokens
    auto r = open();
    ASSERT_TRUE(r);
    for (std::vector<int> split : {std::vector<int>{70, 1, 1, 78}, {64, 86}, {1, 1, 1, 1, 1, 145}, {63, 2, 85}, {149, 1}}) {
        auto seq = r->new_sequence();
        ASSERT_TRUE(seq.ok());
        std::vector<float> all;
        size_t at = 0;
        for (int n : split) {
            std::vector<int32_t> part(c.tokens.begin() + at, c.tokens.begin() + at + n);
            auto l = r->feed(*seq, part, true, /*chunk=*/40);
            ASSERT_TRUE(l.ok()) << l.status();
            all.insert(all.end(), l->begin(), l->end());
            at += n;
        }
        auto d = compare(all, c.logits, c.vocab);
        EXPECT_LT(d.rel(), kRelTol) << "split starting " << split[0];
        r->release(*seq);
    }
}

// Several sequences of different lengths and positions in one step equal each run alone.
TEST_P(GoldenTest, BatchedSequencesMatchSingleRuns) {
    auto g = load_golden(GetParam().fixture);
    auto r = open();
    ASSERT_TRUE(r);
    std::vector<int32_t> seqs;
    std::vector<std::pair<int32_t, std::vector<int32_t>>> work;
    for (size_t i = 1; i < g.cases.size(); ++i) {  // 7, 64, 150 tokens
        auto s = r->new_sequence();
        ASSERT_TRUE(s.ok());
        seqs.push_back(*s);
        work.push_back({*s, g.cases[i].tokens});
    }
    auto l = r->feed_batch(work, true);
    ASSERT_TRUE(l.ok()) << l.status();
    size_t off = 0;
    for (size_t i = 1; i < g.cases.size(); ++i) {
        const auto& c = g.cases[i];
        std::vector<float> rows(l->begin() + off, l->begin() + off + c.logits.size());
        off += c.logits.size();
        auto d = compare(rows, c.logits, c.vocab);
        EXPECT_LT(d.rel(), kRelTol) << "case " << i;
    }
    // Then one decode step for all of them at once, against their own prefixes + 1 token.
    std::vector<std::pair<int32_t, std::vector<int32_t>>> step;
    for (int32_t s : seqs) step.push_back({s, {5}});
    auto d1 = r->feed_batch(step, false);
    ASSERT_TRUE(d1.ok());
    for (size_t i = 1; i < g.cases.size(); ++i) {
        auto solo = r->new_sequence();
        if (!solo.ok()) break;  // runner full: checked the first ones
        std::vector<int32_t> toks = g.cases[i].tokens;
        toks.push_back(5);
        auto l2 = r->feed(*solo, toks, false);
        ASSERT_TRUE(l2.ok());
        const int64_t V = g.cases[i].vocab;
        std::vector<float> got(d1->begin() + (i - 1) * V, d1->begin() + i * V);
        auto d = compare(got, *l2, V);
        EXPECT_LT(d.rel(), kRelTol);
        r->release(*solo);
    }
}

// Greedy decoding token by token (recurrent GDN path, one KV append per step) reproduces the
// reference's greedy continuation while the reference's top-1 margin is clear.
TEST_P(GoldenTest, GreedyGenerationMatchesReference) {
    auto g = load_golden(GetParam().fixture);
    auto r = open();
    ASSERT_TRUE(r);
    auto seq = r->new_sequence();
    ASSERT_TRUE(seq.ok());
    auto l = r->feed(*seq, g.gen_prompt, false);
    ASSERT_TRUE(l.ok());
    for (size_t i = 0; i < g.gen_greedy.size(); ++i) {
        const int32_t next = int32_t(std::max_element(l->begin(), l->end()) - l->begin());
        if (g.gen_margins[i] < 0.05f) break;  // near-tie in the reference: later tokens may differ
        ASSERT_EQ(next, g.gen_greedy[i]) << "step " << i;
        l = r->feed(*seq, std::vector<int32_t>{next}, false);
        ASSERT_TRUE(l.ok());
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenTest,
                         ::testing::Values(Param{"dense", "hf"}, Param{"dense", "model-f16.gguf"},
                                           Param{"dense_dkdv", "hf"}, Param{"moe", "hf"},
                                           Param{"moe", "model-f16.gguf"}, Param{"tied_vlm", "hf"},
                                           Param{"tied_vlm", "model-f16.gguf"}),
                         [](const auto& info) {
                             std::string n = info.param.fixture + "_" + (info.param.file == "hf" ? "hf" : "gguf");
                             return n;
                         });

}  // namespace
}  // namespace dg
