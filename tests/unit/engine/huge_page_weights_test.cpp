// The serving CPU backend's weight placement (engine/cpu/huge_page_weights.h): every matrix moved into one
// 2 MiB-aligned read-only mapping with its bytes unchanged, shared and overlapping bytes still shared,
// the loader's buffers released; a model served from it gives the same logits bit for bit as one that
// reads the file in place (DG_CPU_HUGE_PAGES=0), and a bad DG_CPU_HUGE_PAGES is refused.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/cpu/huge_page_weights.h"
#include "engine/cpu/rows16.h"
#include "engine/model_export.h"
#include "engine/model_source.h"
#include "engine/runner.h"
#include "engine/weights.h"

namespace dg {
namespace {

namespace fs = std::filesystem;

class HugePageWeights : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("dg_huge_pages_" + std::to_string(::getpid()));
        fs::create_directories(dir_);
    }
    void TearDown() override {
        unsetenv("DG_CPU_HUGE_PAGES");
        fs::remove_all(dir_);
    }
    // A tiny model with a tied output head and experts, in `type`, as a GGUF file.
    std::string write_model(bool moe, const std::string& type) {
        ModelConfig c = *preset_config(moe ? "tiny-moe" : "tiny");
        c.tied_embeddings = true;
        GgufExportOptions opt;
        opt.type = type;
        const std::string path = (dir_ / ((moe ? "moe-" : "dense-") + type + ".gguf")).string();
        EXPECT_TRUE(export_gguf(random_model(c, 5), path, opt).ok());
        return path;
    }
    fs::path dir_;
};

std::vector<Matrix> matrices(ModelWeights& w) {
    std::vector<Matrix> out;
    w.for_each_matrix([&](Matrix& m) { out.push_back(m); });
    return out;
}

TEST_F(HugePageWeights, MovesEveryMatrixWithItsBytes) {
    for (const bool moe : {false, true}) {
        const std::string path = write_model(moe, "q8_0");
        auto moved = load_gguf_model(path), in_place = load_gguf_model(path);
        ASSERT_TRUE(moved.ok() && in_place.ok());
        ASSERT_EQ((*moved)->lm_head.data, (*moved)->embed.data) << "the tied head should share the table";
        auto p = cpu::move_matrices_to_huge_pages(**moved);
        ASSERT_TRUE(p.ok()) << p.status();
        std::printf("%s: %s\n", moe ? "tiny-moe" : "tiny", cpu::describe(*p).c_str());

        const std::vector<Matrix> after = matrices(**moved), before = matrices(**in_place);
        ASSERT_EQ(after.size(), before.size());
        std::map<const uint8_t*, uint64_t> distinct;  // what the placement should have counted
        const uint8_t* lowest = after.front().data;
        for (size_t i = 0; i < after.size(); ++i) {
            const uint64_t bytes = uint64_t(before[i].rows) * before[i].row_bytes;
            ASSERT_NE(after[i].data, before[i].data);
            ASSERT_EQ(std::memcmp(after[i].data, before[i].data, bytes), 0) << "matrix " << i;
            distinct[before[i].data] = bytes;
            lowest = std::min(lowest, after[i].data);
        }
        uint64_t total = 0;
        for (const auto& [ptr, bytes] : distinct) total += bytes;
        EXPECT_EQ(p->bytes, total);
        EXPECT_LE(p->huge_bytes, p->bytes);
        EXPECT_EQ((*moved)->lm_head.data, (*moved)->embed.data);
        // One mapping from a 2 MiB boundary, which is what the kernel can back with huge pages.
        EXPECT_EQ(uintptr_t(lowest) % (uintptr_t(2) << 20), 0u);
        EXPECT_EQ((*moved)->keep_alive.size(), 1u);
        EXPECT_TRUE((*moved)->owned.empty());
    }
}

TEST_F(HugePageWeights, OverlappingMatricesKeepSharingBytes) {
    // Slices of one buffer, as a loader that splits a fused tensor would make them: qkv's rows overlap z's,
    // beta starts where qkv ends, out lies apart from them, and a second buffer holds the embedding table.
    ModelWeights w;
    uint8_t* a = w.own(4096);
    uint8_t* b = w.own(1000);
    for (int i = 0; i < 4096; ++i) a[i] = uint8_t(i * 7 + 1);
    for (int i = 0; i < 1000; ++i) b[i] = uint8_t(i * 3 + 2);
    w.embed = Matrix{DType::F32, 10, 25, b, 100};
    w.lm_head = w.embed;
    LayerWeights l;
    l.gdn.qkv = Matrix{DType::F32, 8, 64, a, 256};            // [0, 2048)
    l.gdn.z = Matrix{DType::F32, 4, 64, a + 1024, 256};       // [1024, 2048): inside qkv
    l.gdn.beta = Matrix{DType::F32, 1, 64, a + 2048, 256};     // [2048, 2304): touches qkv's end
    l.gdn.out = Matrix{DType::F32, 6, 64, a + 2048 + 512, 256};  // [2560, 4096): after a gap
    w.layers.push_back(l);
    const std::vector<uint8_t> a_copy(a, a + 4096), b_copy(b, b + 1000);

    auto p = cpu::move_matrices_to_huge_pages(w);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->bytes, 2048u + 256u + 1536u + 1000u);
    const GdnWeights& g = w.layers[0].gdn;
    EXPECT_EQ(g.z.data, g.qkv.data + 1024);  // still the same bytes, not a second copy
    EXPECT_EQ(g.beta.data, g.qkv.data + 2048);  // still right after qkv, as expert slices of one tensor
    EXPECT_EQ(std::memcmp(g.beta.data, a_copy.data() + 2048, 256), 0);
    EXPECT_EQ(std::memcmp(g.qkv.data, a_copy.data(), 2048), 0);
    EXPECT_EQ(std::memcmp(g.out.data, a_copy.data() + 2560, 1536), 0);
    EXPECT_EQ(std::memcmp(w.embed.data, b_copy.data(), 1000), 0);
    EXPECT_EQ(w.lm_head.data, w.embed.data);
    EXPECT_EQ(uintptr_t(g.out.data) % 4096, 0u) << "each run of bytes starts a page";
}

TEST_F(HugePageWeights, MovedWeightsAreReadOnly) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");  // the CPU pool's threads may be running
    ModelWeights w;
    uint8_t* a = w.own(256);
    w.embed = Matrix{DType::F32, 4, 16, a, 64};
    ASSERT_TRUE(cpu::move_matrices_to_huge_pages(w).ok());
    uint8_t* moved = const_cast<uint8_t*>(w.embed.data);
    EXPECT_DEATH(*reinterpret_cast<volatile uint8_t*>(moved) = 1, "");
}

TEST_F(HugePageWeights, ServingFromHugePagesGivesTheSameLogits) {
    // bf16: the float decode dot and the prefill GEMM; q4_k_m: the integer kernels. Both backends below are
    // the fast one; only where its weights live differs.
    for (const std::string type : {"bf16", "q4_k_m"}) {
        const std::string path = write_model(false, type);
        std::vector<int32_t> prompt;
        for (int i = 0; i < 40; ++i) prompt.push_back((i * 37 + 3) % 1000);
        std::vector<std::vector<float>> logits[2];
        setenv("DG_CPU_PACK", "0", 1);  // the move alone (packing changes the kernel: the tests below)
        for (const bool huge : {true, false}) {
            setenv("DG_CPU_HUGE_PAGES", huge ? "1" : "0", 1);
            auto r = Runner::open(path, BackendKind::kCpu, RunnerOptions{DType::F32});
            ASSERT_TRUE(r.ok()) << r.status();
            const std::string device = (*r)->model().backend().device_name();
            EXPECT_EQ(device.find("2 MiB pages") != std::string::npos, huge) << device;
            const int32_t s = *(*r)->new_sequence();
            auto l = (*r)->feed(s, prompt, false);
            ASSERT_TRUE(l.ok());
            logits[huge].push_back(*l);
            for (int step = 0; step < 4; ++step) {
                const int32_t next = (step * 101 + 7) % 1000;
                l = (*r)->feed(s, {&next, 1}, false);
                ASSERT_TRUE(l.ok());
                logits[huge].push_back(*l);
            }
        }
        EXPECT_EQ(logits[0], logits[1]) << type;
    }
    unsetenv("DG_CPU_PACK");
}

// Packing Q4_K, Q8_0 and BF16 matrices for the decode kernels (rows16.h) on the move: every eligible matrix is packed
// (the tied head and its table once, both marked), and every row of every matrix still reads as the
// file's bytes. (The tiny MoE preset's expert widths are not whole super-blocks: no q4_k_m file of it.)
TEST_F(HugePageWeights, PackingKeepsEveryRowOfEveryMatrix) {
    if (!cpu::rows16_dot_kernel(DType::Q4_K)) GTEST_SKIP() << "no AVX-512 VNNI: nothing is packed";
    for (const std::string type : {"q4_k_m", "q8_0", "bf16"}) {
        const std::string path = write_model(false, type);
        auto moved = load_gguf_model(path), in_place = load_gguf_model(path);
        ASSERT_TRUE(moved.ok() && in_place.ok());
        auto p = cpu::move_matrices_to_huge_pages(**moved, true);
        ASSERT_TRUE(p.ok()) << p.status();
        std::printf("tiny %s: %s\n", type.c_str(), cpu::describe(*p).c_str());
        const std::vector<Matrix> after = matrices(**moved), before = matrices(**in_place);
        ASSERT_EQ(after.size(), before.size());
        uint64_t packed = 0;
        std::set<const uint8_t*> counted;
        for (size_t i = 0; i < after.size(); ++i) {
            const bool eligible = cpu::can_pack_rows16(before[i]);
            EXPECT_EQ(after[i].packing == Packing::kRows16, eligible) << type << " matrix " << i;
            if (eligible && counted.insert(after[i].data).second) packed += uint64_t(after[i].rows) * after[i].row_bytes;
            std::vector<uint8_t> scratch(after[i].row_bytes);
            for (int64_t r = 0; r < after[i].rows; ++r)
                ASSERT_EQ(std::memcmp(cpu::plain_row(after[i], r, scratch.data()), before[i].row(r), before[i].row_bytes), 0)
                    << "matrix " << i << " row " << r;
        }
        EXPECT_GT(packed, 0u) << "no matrix of the " << type << " model was packed";
        EXPECT_EQ(p->packed_bytes, packed);
        EXPECT_EQ((*moved)->embed.packing, (*moved)->lm_head.packing) << "the tied head and its table";
    }
}

// The serving backend on packed matrices against the oracle: the activation rounding's error, bounded as
// the fast path's is (Q4_K: a scale per 32 where the per-row kernel has one per 256).
TEST_F(HugePageWeights, PackedModelsAgainstTheOracle) {
    if (!cpu::rows16_dot_kernel(DType::Q4_K)) GTEST_SKIP() << "no AVX-512 VNNI: nothing is packed";
    for (const std::string type : {"q4_k_m", "q8_0", "bf16"}) {
        if (type == "bf16" && !cpu::rows16_bf16_dot_kernel()) continue;  // no AVX512_BF16: not packed
        const std::string path = write_model(false, type);
        std::vector<int32_t> prompt;
        for (int i = 0; i < 6; ++i) prompt.push_back((i * 37 + 3) % 1000);
        auto logits = [&](BackendKind kind, const char* pack) {
            setenv("DG_CPU_PACK", pack, 1);
            auto r = Runner::open(path, kind, RunnerOptions{DType::F32});
            EXPECT_TRUE(r.ok()) << r.status();
            if (kind == BackendKind::kCpu) {
                const std::string device = (*r)->model().backend().device_name();
                EXPECT_EQ(device.find("packed by 16 rows") != std::string::npos, std::string(pack) == "1") << device;
            }
            const int32_t s = *(*r)->new_sequence();
            std::vector<std::vector<float>> out{*(*r)->feed(s, prompt, false)};  // 6 tokens: the per-row kernels
            for (int step = 0; step < 3; ++step) {
                const int32_t next = (step * 101 + 7) % 1000;
                out.push_back(*(*r)->feed(s, {&next, 1}, false));
            }
            unsetenv("DG_CPU_PACK");
            return out;
        };
        const auto oracle = logits(BackendKind::kCpuExact, "1"), packed = logits(BackendKind::kCpu, "1"),
                   unpacked = logits(BackendKind::kCpu, "0");
        auto worst = [&](const std::vector<std::vector<float>>& got) {
            double w = 0;
            for (size_t k = 0; k < got.size(); ++k) {
                double num = 0, den = 0;
                for (size_t i = 0; i < got[k].size(); ++i) {
                    num += (got[k][i] - oracle[k][i]) * double(got[k][i] - oracle[k][i]);
                    den += double(oracle[k][i]) * oracle[k][i];
                }
                w = std::max(w, std::sqrt(num / den));
            }
            return w;
        };
        const double e_packed = worst(packed), e_unpacked = worst(unpacked);
        std::printf("tiny %s vs oracle, worst normalised logit error: packed %.2e, per-row kernels %.2e\n", type.c_str(),
                    e_packed, e_unpacked);
        EXPECT_NE(packed, unpacked) << type << ": packing changed nothing: did the packed kernels run?";
        EXPECT_GT(e_packed, 0.0) << type;
        // Measured on this random tiny model, whose errors compound over its layers more than CpuQuantDot's
        // model's (bounded there): q4_k_m 6.0e-2 packed, 1.0e-1 per row (a scale per 256); q8_0 alike packed
        // and per row (the same activations, another summation order).
        EXPECT_LT(e_packed, 1e-1) << type;
    }
}

TEST_F(HugePageWeights, ABadSettingIsRefused) {
    const std::string path = write_model(false, "q8_0");
    setenv("DG_CPU_HUGE_PAGES", "yes", 1);
    auto r = Runner::open(path, BackendKind::kCpu, RunnerOptions{DType::F32});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(std::string(r.status().message()).find("DG_CPU_HUGE_PAGES='yes'"), std::string::npos) << r.status();
    // The oracle never moves its weights, so the setting does not concern it.
    EXPECT_TRUE(Runner::open(path, BackendKind::kCpuExact, RunnerOptions{DType::F32}).ok());
}

}  // namespace
}  // namespace dg
