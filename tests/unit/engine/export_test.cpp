// make-model / convert: the GGUF exporter's layout transforms (tiled heads, 1+w, -exp(A_log), split
// experts) are checked by running the same random model from its HF export and its GGUF export, and by
// converting the reference's own HF fixtures and comparing with the reference's logits.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/model_export.h"
#include "engine/model_source.h"
#include "engine/runner.h"
#include "tests/unit/engine/fixtures.h"

namespace dg {
namespace {

namespace fs = std::filesystem;

// Every input width a multiple of 256 so K-quants apply; Hk != Hv so the head reorder matters.
ModelConfig small_config(bool moe) {
    ModelConfig c = *preset_config(moe ? "tiny-moe" : "tiny");
    c.vocab_size = 512;
    c.hidden = 256;
    c.n_layers = 4;
    c.is_attention = {false, false, false, true};
    c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 128, c.rotary_dim = 32;
    c.lin_k_heads = 2, c.lin_v_heads = 4, c.lin_k_dim = c.lin_v_dim = 64;
    if (moe) c.n_experts = 4, c.n_experts_used = 2, c.expert_intermediate = 256, c.shared_intermediate = 256;
    else c.intermediate = 512;
    c.eos_ids = {511};
    return c;
}

std::vector<float> run_all(const std::string& path, const std::vector<int32_t>& toks) {
    auto r = Runner::open(path, BackendKind::kCpuExact, RunnerOptions{DType::F32});
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    auto s = (*r)->new_sequence();
    auto l = (*r)->feed(*s, toks, true);
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? *l : std::vector<float>{};
}

class ExportTest : public ::testing::TestWithParam<bool> {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("dg_export_" + std::to_string(::getpid()) + (GetParam() ? "_moe" : ""));
        fs::create_directories(dir_);
        src_ = random_model(small_config(GetParam()), 7);
        for (int i = 0; i < 80; ++i) toks_.push_back((i * 37 + 11) % 512);
    }
    void TearDown() override { fs::remove_all(dir_); }
    fs::path dir_;
    ModelSource src_;
    std::vector<int32_t> toks_;
};

TEST_P(ExportTest, HfAndGgufExportsGiveTheSameLogits) {
    ASSERT_TRUE(export_hf(src_, (dir_ / "hf").string(), DType::F32).ok());
    GgufExportOptions opt;
    opt.type = "f32";
    ASSERT_TRUE(export_gguf(src_, (dir_ / "m.gguf").string(), opt).ok());
    auto a = run_all((dir_ / "hf").string(), toks_), b = run_all((dir_ / "m.gguf").string(), toks_);
    ASSERT_EQ(a.size(), b.size());
    auto d = testing::compare(b, a, 512);
    EXPECT_LT(d.rel(), 1e-5) << d.max_abs;
    EXPECT_GT(d.scale, 0.5);  // the random model has spread logits, so the comparison means something
}

// Quantised exports stay close to f32; the bound grows as bits shrink (relative to the logit std).
TEST_P(ExportTest, QuantisedExportsStayCloseToF32) {
    GgufExportOptions opt;
    opt.type = "f32";
    ASSERT_TRUE(export_gguf(src_, (dir_ / "f32.gguf").string(), opt).ok());
    auto ref = run_all((dir_ / "f32.gguf").string(), toks_);
    for (auto [type, tol] : std::vector<std::pair<std::string, double>>{
             {"f16", 0.01}, {"bf16", 0.05}, {"q8_0", 0.05}, {"q6_k", 0.1}, {"q5_k", 0.2}, {"q4_k_m", 0.4},
             {"q4_k", 0.4}, {"q4_0", 0.5}, {"q4_1", 0.5}}) {
        opt.type = type;
        const std::string p = (dir_ / (type + ".gguf")).string();
        ASSERT_TRUE(export_gguf(src_, p, opt).ok()) << type;
        auto got = run_all(p, toks_);
        ASSERT_EQ(got.size(), ref.size());
        auto d = testing::compare(got, ref, 512, 1e9);
        double mean_abs = 0;
        for (size_t i = 0; i < ref.size(); ++i) mean_abs += std::abs(got[i] - ref[i]);
        mean_abs /= ref.size();
        EXPECT_LT(mean_abs / d.scale, tol) << type;
    }
}

TEST_P(ExportTest, KQuantRowWidthIsCheckedWithAClearError) {
    ModelConfig c = small_config(GetParam());
    c.hidden = 192;  // not a multiple of 256
    GgufExportOptions opt;
    opt.type = "q4_k";
    auto s = export_gguf(random_model(c, 1), (dir_ / "bad.gguf").string(), opt);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(std::string(s.message()).find("multiple of 256"), std::string::npos) << s;
}

INSTANTIATE_TEST_SUITE_P(Dense_Moe, ExportTest, ::testing::Values(false, true));

// Our converter on the reference's HF fixtures reproduces the reference's logits.
TEST(ConvertTest, ConvertedReferenceFixturesMatchGolden) {
    for (const char* name : {"dense", "moe", "tied_vlm"}) {
        auto src = hf_model_source(testing::fixture_dir(name) + "/hf");
        ASSERT_TRUE(src.ok()) << src.status();
        const std::string out = (fs::temp_directory_path() / (std::string("dg_conv_") + name + ".gguf")).string();
        GgufExportOptions opt;
        opt.type = "f32";
        ASSERT_TRUE(export_gguf(*src, out, opt).ok()) << name;
        auto g = testing::load_golden(name);
        const auto& c = g.cases.back();
        auto got = run_all(out, c.tokens);
        auto d = testing::compare(got, c.logits, c.vocab);
        EXPECT_LT(d.rel(), 1e-3) << name;
        EXPECT_EQ(d.argmax_mismatch, 0) << name;
        fs::remove(out);
    }
}

}  // namespace
}  // namespace dg
