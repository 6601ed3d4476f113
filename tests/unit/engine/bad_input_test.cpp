// Bad model files and bad batches: each is a clear error naming the file and the tensor/field, never a
// crash. (Byte-level parser robustness of GGUF/safetensors is in tests/unit/formats and the fuzzers.)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/formats/safetensors.h"
#include "engine/model.h"
#include "engine/runner.h"
#include "nlohmann/json.hpp"
#include "tests/unit/engine/fixtures.h"

namespace dg {
namespace {

namespace fs = std::filesystem;

class BadModelTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("dg_bad_" + std::to_string(::getpid()));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        fs::copy(testing::fixture_dir("dense") + "/hf", dir_, fs::copy_options::recursive);
        std::ifstream in(dir_ / "config.json");
        cfg_ = nlohmann::json::parse(in);
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string load_error() {
        std::ofstream(dir_ / "config.json") << cfg_.dump();
        auto w = load_model(dir_.string());
        return w.ok() ? "" : std::string(w.status().message());
    }
    // Rewrites model.safetensors without `drop`, or with `reshape` given a wrong shape.
    void rewrite(const std::string& drop, const std::string& reshape = "") {
        auto f = SafetensorsFile::open((dir_ / "model.safetensors").string());
        ASSERT_TRUE(f.ok());
        SafetensorsWriter w;
        for (const auto& t : (*f)->tensors()) {
            if (t.name == drop) continue;
            auto shape = t.shape;
            if (t.name == reshape) shape = {shape[0] * shape[1]};
            ASSERT_TRUE(w.add(t.name, t.type, shape, t.data).ok());
        }
        ASSERT_TRUE(w.write((dir_ / "model.safetensors.new").string()).ok());
        f->reset();
        fs::rename(dir_ / "model.safetensors.new", dir_ / "model.safetensors");
    }
    fs::path dir_;
    nlohmann::json cfg_;
};

TEST_F(BadModelTest, MissingTensorIsNamed) {
    rewrite("model.layers.2.linear_attn.A_log");
    EXPECT_NE(load_error().find("tensor 'model.layers.2.linear_attn.A_log' missing"), std::string::npos) << load_error();
}

TEST_F(BadModelTest, WrongShapeIsNamed) {
    rewrite("", "model.layers.1.mlp.up_proj.weight");
    const std::string e = load_error();
    EXPECT_NE(e.find("model.layers.1.mlp.up_proj.weight' has shape"), std::string::npos) << e;
    EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
}

TEST_F(BadModelTest, ConfigThatDisagreesWithTheWeights) {
    cfg_["hidden_size"] = 96;
    EXPECT_NE(load_error().find("has shape"), std::string::npos) << load_error();
}

TEST_F(BadModelTest, NotAQwen35Config) {
    cfg_["model_type"] = "llama";
    EXPECT_NE(load_error().find("model_type 'llama' is not a Qwen3.5 text model"), std::string::npos) << load_error();
    cfg_["model_type"] = "qwen3_5_text";
    cfg_["num_attention_heads"] = 3;  // not a multiple of 2 kv heads
    EXPECT_NE(load_error().find("num_attention_heads"), std::string::npos) << load_error();
    cfg_["num_attention_heads"] = "four";
    EXPECT_NE(load_error().find("'num_attention_heads' has the wrong type"), std::string::npos) << load_error();
}

TEST_F(BadModelTest, BrokenJsonAndMissingFiles) {
    std::ofstream(dir_ / "config.json") << "{\"model_type\": ";
    auto w = load_model(dir_.string());
    ASSERT_FALSE(w.ok());
    EXPECT_NE(std::string(w.status().message()).find("not valid JSON"), std::string::npos);
    EXPECT_FALSE(load_model((dir_ / "nope.gguf").string()).ok());
    std::ofstream(dir_ / "empty.gguf") << "";
    auto e = load_model((dir_ / "empty.gguf").string());
    ASSERT_FALSE(e.ok());
    EXPECT_NE(std::string(e.status().message()).find("empty.gguf"), std::string::npos) << e.status();
}

TEST(BadBatchTest, EveryMalformedBatchIsRejectedBeforeItRuns) {
    auto r = Runner::open(testing::fixture_dir("dense") + "/hf", BackendKind::kCpuExact, RunnerOptions{DType::F32, 16, 2, 64});
    ASSERT_TRUE(r.ok());
    Model& m = (*r)->model();
    std::vector<int32_t> blocks = {0, 1, 2, 3};
    auto batch = [&](std::vector<int32_t> toks, int32_t pos0, int32_t slot) {
        StepBatch b;
        b.tokens = toks;
        b.seqs.push_back(SeqSlice{0, int32_t(toks.size()), pos0, slot, blocks.data(), 4, false});
        return b;
    };
    std::vector<float> out;
    auto msg = [&](const StepBatch& b) {
        auto s = m.forward(b, &out);
        EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
        return std::string(s.message());
    };
    EXPECT_NE(msg(batch({1, 256}, 0, 0)).find("token id 256 at row 1 is outside the vocabulary"), std::string::npos);
    EXPECT_NE(msg(batch({1, -3}, 0, 0)).find("token id -3"), std::string::npos);
    EXPECT_NE(msg(batch({1}, 0, 7)).find("state slot 7 out of range"), std::string::npos);
    EXPECT_NE(msg(batch({1}, 64, 0)).find("block table has 4 blocks, needs 5"), std::string::npos);
    EXPECT_NE(msg(batch({1}, 32768, 0)).find("exceed the context length"), std::string::npos);
    StepBatch two = batch({1, 2}, 0, 0);
    two.seqs[0].len = 1;
    two.seqs.push_back(SeqSlice{1, 1, 0, 0, blocks.data(), 4, false});
    EXPECT_NE(msg(two).find("shares state slot 0"), std::string::npos);
    StepBatch gap = batch({1, 2}, 0, 0);
    gap.seqs[0].len = 1;
    EXPECT_NE(msg(gap).find("do not cover"), std::string::npos);
    EXPECT_NE(msg(StepBatch{}).find("empty batch"), std::string::npos);
    // A good batch still runs afterwards: nothing was half-applied.
    EXPECT_TRUE(m.forward(batch({1, 2, 3}, 0, 0), &out).ok());
}

TEST(BackendTest, CudaWithoutAGpuIsAClearErrorNotACpuFallback) {
    if (cuda_available()) GTEST_SKIP() << "a CUDA device is present";
    auto b = make_backend(BackendKind::kCuda);
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition) << b.status();
    EXPECT_FALSE(backend_kind_from_name("tpu").ok());
}

}  // namespace
}  // namespace dg
