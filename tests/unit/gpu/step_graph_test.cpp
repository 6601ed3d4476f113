// The CUDA step as graphs against the same step run eagerly (DG_CUDA_GRAPHS=0): over many decode steps
// whose positions, block tables, batch sizes and sampling rows change, the graph path's logits and tokens
// must be bit-identical to the eager path's, for a dense and a MoE model. In the emulation build the
// counters also show each decode step as one graph launch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <cstdio>
#include <vector>

#include "engine/backend.h"
#include "engine/model_export.h"
#include "engine/model_source.h"
#include "engine/runner.h"
#include "engine/sampling.h"
#include "engine/weights.h"

#ifdef DG_CUDA_EMU
#include "engine/cuda/emu/emu.h"
#endif
#ifdef DELTAGATE_HAVE_CUDA
#include "engine/cuda/matmul.cuh"
#endif

namespace dg {
namespace {

// graphs: DG_CUDA_GRAPHS for the runner's backend ("0" eager, "recapture", "1" replay where allowed).
std::unique_ptr<Runner> open_runner(const char* preset, const char* graphs, int32_t max_seqs = 3) {
    ModelConfig c = *preset_config(preset);
    c.max_context = 512;
    const std::string path =
        (std::filesystem::temp_directory_path() / (std::string("dg_step_graph_") + preset + ".gguf")).string();
    GgufExportOptions eo;
    eo.type = "q8_0";
    const absl::Status exported = export_gguf(random_model(c, 11, 64), path, eo);
    EXPECT_TRUE(exported.ok()) << exported;
    auto weights = load_model(path);
    std::filesystem::remove(path);
    EXPECT_TRUE(weights.ok()) << weights.status();
    if (!weights.ok()) return nullptr;
    RunnerOptions opt;
    opt.max_seqs = max_seqs;
    opt.max_tokens_per_seq = 256;
    opt.block_tokens = 8;  // decode crosses block boundaries within the test
    // The backend reads DG_CUDA_GRAPHS when it is made (once per runner).
    setenv("DG_CUDA_GRAPHS", graphs, 1);
    auto r = Runner::create(std::move(*weights), BackendKind::kCuda, opt);
    unsetenv("DG_CUDA_GRAPHS");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? std::move(*r) : nullptr;
}

void expect_same_bits(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << what << ": graph replay differs from eager";
}

class CudaStepGraphs : public ::testing::TestWithParam<const char*> {};

// Three runners in lockstep: eager, captured every step ("recapture": the executable graph updated with
// each step's capture), and replayed as it stands where the step's signature allows (the default). Their
// logits and tokens must be the same bits. In the emulation build also: each decode step is one graph
// launch and one synchronisation; the replaying runner replays (no capture: no instantiation and no
// update) in most batched steps; and wherever it replays, the recapturing runner's update of the same step
// changed no node's parameters (emu::last_graph_update_changes): what the replay launched was what a
// capture would have launched.
TEST_P(CudaStepGraphs, ReplayIsBitIdenticalToEager) {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    enum { kEager, kRecapture, kReplay };
    const char* modes[] = {"0", "recapture", "1"};
    std::vector<std::unique_ptr<Runner>> rs;
    for (const char* m : modes) rs.push_back(open_runner(GetParam(), m));
    ASSERT_TRUE(rs[0] && rs[1] && rs[2]);
    std::vector<std::vector<int32_t>> seqs(3);
    const std::vector<std::vector<int32_t>> prompts = {{3, 1, 4, 1, 5}, {9, 2, 6}, {5, 3, 5, 8, 9, 7, 9}};
    std::vector<int32_t> last;
    for (const auto& p : prompts) {
        std::vector<std::vector<float>> l;
        for (int r = 0; r < 3; ++r) {
            seqs[r].push_back(*rs[r]->new_sequence());
            auto got = rs[r]->feed(seqs[r].back(), p, false);
            ASSERT_TRUE(got.ok()) << got.status();
            l.push_back(std::move(*got));
        }
        expect_same_bits(l[kEager], l[kRecapture], "prefill (recapture)");
        expect_same_bits(l[kEager], l[kReplay], "prefill (replay)");
        last.push_back(int32_t(std::max_element(l[0].begin(), l[0].end()) - l[0].begin()));
    }
    const int64_t V = rs[0]->config().vocab_size;
    int replayed = 0;
    for (int step = 0; step < 16; ++step) {
        const std::string at = "step " + std::to_string(step);
        if (step % 4 == 3) {  // one sequence alone: another batch size, its own graph
            const int32_t i = step % 3;
            std::vector<std::vector<float>> l;
            for (int r = 0; r < 3; ++r) {
                auto got = rs[r]->feed(seqs[r][i], std::vector<int32_t>{last[i]}, false);
                ASSERT_TRUE(got.ok()) << at;
                l.push_back(std::move(*got));
            }
            expect_same_bits(l[kEager], l[kRecapture], at + " (recapture)");
            expect_same_bits(l[kEager], l[kReplay], at + " (replay)");
            last[i] = int32_t(std::max_element(l[0].begin(), l[0].end()) - l[0].begin());
            continue;
        }
        if (step % 4 == 2) {  // sampled on the device: a seeded top-k/top-p draw with penalties
            const int32_t i = 1;
            std::vector<SampleRow> rows(1);
            rows[0].params = {.temperature = 0.9f, .top_k = 20, .top_p = 0.95f, .seed = 5, .repetition_penalty = 1.2f};
            rows[0].position = uint64_t(step);
            const std::vector<int32_t> hist = {last[0], last[1], last[2]};
            rows[0].tokens = hist;
            rows[0].prompt_len = 1;
            std::vector<int32_t> tokens;
            for (int r = 0; r < 3; ++r) {
                auto d = rs[r]->feed_sample(seqs[r][i], std::vector<int32_t>{last[i]}, rows);
                ASSERT_TRUE(d.ok()) << at << d.status();
                tokens.push_back((*d)[0].token);
            }
            EXPECT_EQ(tokens[kRecapture], tokens[kEager]) << at;
            EXPECT_EQ(tokens[kReplay], tokens[kEager]) << at;
            last[i] = tokens[kEager];
            continue;
        }
        if (step == 8) {  // a longer chunk first: the model's workspaces grow (new addresses), so the
                          // next batched step must be captured again, not replayed
            std::vector<int32_t> chunk;
            for (int t = 0; t < 40; ++t) chunk.push_back((t * 7 + 3) % 50);
            chunk.push_back(last[0]);
            std::vector<std::vector<float>> c;
            for (int r = 0; r < 3; ++r) {
                auto got = rs[r]->feed(seqs[r][0], chunk, false);
                ASSERT_TRUE(got.ok()) << at << got.status();
                c.push_back(std::move(*got));
            }
            expect_same_bits(c[kEager], c[kRecapture], at + " chunk (recapture)");
            expect_same_bits(c[kEager], c[kReplay], at + " chunk (replay)");
            last[0] = int32_t(std::max_element(c[0].begin(), c[0].end()) - c[0].begin());
        }
        std::vector<std::vector<float>> l(3);
#ifdef DG_CUDA_EMU
        std::vector<std::string> recapture_changes;
        bool recapture_updated = false, replay_replayed = false;
#endif
        // The replaying runner last: the buffer epoch is process-wide (one backend per worker process),
        // so another runner's first allocations at a new size would void its signature.
        for (int r : {kEager, kRecapture, kReplay}) {
            std::vector<std::pair<int32_t, std::vector<int32_t>>> work;
            for (size_t i = 0; i < last.size(); ++i) work.push_back({seqs[r][i], {last[i]}});
#ifdef DG_CUDA_EMU
            emu::reset_counters();
#endif
            auto got = rs[r]->feed_batch(work, false);
            ASSERT_TRUE(got.ok()) << at << " " << got.status();
            l[r] = std::move(*got);
#ifdef DG_CUDA_EMU
            const emu::Counters k = emu::counters();
            if (r == kEager) continue;
            EXPECT_EQ(k.graph_launches, 1) << at << " " << modes[r];
            EXPECT_EQ(k.host_syncs, 1) << at << " " << modes[r];
            if (r == kRecapture) {
                recapture_updated = k.graph_updates == 1;
                recapture_changes = emu::last_graph_update_changes();
            } else {
                replay_replayed = k.graph_updates == 0 && k.graph_instantiations == 0;
            }
#endif
        }
        expect_same_bits(l[kEager], l[kRecapture], at + " (recapture)");
        expect_same_bits(l[kEager], l[kReplay], at + " (replay)");
#ifdef DG_CUDA_EMU
        if (replay_replayed) {
            ++replayed;
            EXPECT_TRUE(recapture_updated) << at << ": replayed a graph the recapturing runner had to instantiate again";
            std::string names;
            for (const std::string& n : recapture_changes) names += " " + n;
            EXPECT_TRUE(recapture_changes.empty())
                << at << ": the step was replayed as it stood, but a capture changed the parameters of:" << names;
        }
#endif
        for (size_t i = 0; i < last.size(); ++i)
            last[i] = int32_t(std::max_element(l[0].begin() + i * V, l[0].begin() + (i + 1) * V) - (l[0].begin() + i * V));
    }
#ifdef DG_CUDA_EMU
    std::printf("[ GRAPHS   ] %s: %d of 8 batched decode steps replayed without capture\n", GetParam(), replayed);
    EXPECT_GE(replayed, 4) << "the replaying runner should replay most batched decode steps";
#else
    (void)replayed;
#endif
}

#ifdef DELTAGATE_HAVE_CUDA
// A decode batch of kGemmMinTokens + 1 sequences takes the serving matmul's GEMM path (cuBLAS, bf16 tiles)
// inside the step's graph: the workspaces and the cuBLAS handle are reserved before the capture, the
// GEMMs are issued on the backend's stream and captured, and the replay gives the eager step's bits.
TEST(CudaStepGraphsGemm, LargeDecodeBatchCapturesTheGemm) {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    const int32_t n = cuda::kGemmMinTokens + 1;
    auto eager = open_runner("tiny", "0", n);
    auto graph = open_runner("tiny", "1", n);
    ASSERT_TRUE(eager && graph);
    std::vector<int32_t> seq_e, seq_g, last;
    for (int32_t i = 0; i < n; ++i) {
        seq_e.push_back(*eager->new_sequence());
        seq_g.push_back(*graph->new_sequence());
        const std::vector<int32_t> p = {3 + i % 7, 1 + i % 5};
        auto le = eager->feed(seq_e.back(), p, false);
        auto lg = graph->feed(seq_g.back(), p, false);
        ASSERT_TRUE(le.ok() && lg.ok());
        last.push_back(int32_t(std::max_element(le->begin(), le->end()) - le->begin()));
    }
    const int64_t V = eager->config().vocab_size;
    for (int step = 0; step < 2; ++step) {
        const std::string at = "batch " + std::to_string(n) + " step " + std::to_string(step);
        std::vector<std::pair<int32_t, std::vector<int32_t>>> we, wg;
        for (int32_t i = 0; i < n; ++i) {
            we.push_back({seq_e[size_t(i)], {last[size_t(i)]}});
            wg.push_back({seq_g[size_t(i)], {last[size_t(i)]}});
        }
#ifdef DG_CUDA_EMU
        emu::reset_counters();
#endif
        auto lg = graph->feed_batch(wg, false);
#ifdef DG_CUDA_EMU
        const emu::Counters k = emu::counters();
        EXPECT_EQ(k.graph_launches, 1) << at;
        EXPECT_EQ(k.host_syncs, 1) << at;
        EXPECT_EQ(k.copies_h2d, 1) << at;
#endif
        auto le = eager->feed_batch(we, false);
        ASSERT_TRUE(le.ok() && lg.ok()) << at << " " << le.status() << " " << lg.status();
        expect_same_bits(*le, *lg, at);
        for (int32_t i = 0; i < n; ++i)
            last[size_t(i)] = int32_t(std::max_element(le->begin() + i * V, le->begin() + (i + 1) * V) - (le->begin() + i * V));
    }
}
#endif  // DELTAGATE_HAVE_CUDA

INSTANTIATE_TEST_SUITE_P(Models, CudaStepGraphs, ::testing::Values("tiny", "tiny-moe"),
                         [](const auto& info) { return std::string(info.param) == "tiny" ? "dense" : "moe"; });

}  // namespace
}  // namespace dg
