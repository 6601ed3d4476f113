// The scheduler's exactness rule (exactness_test.cpp) through the CUDA backend: multi-turn resume from
// checkpoints, prefix sharing with a copied tail block, fork and preemption, run by an EngineLoop on
// BackendKind::kCudaExact (the CUDA twin of the CPU oracle: fp32 matmuls, engine/cuda/matmul.cuh), must give the greedy tokens of a cold CPU run (the oracle), and where marked of a
// cold CUDA run too.
// And for every KV type on every golden fixture, a greedy request through the CUDA scheduler equals the
// cold CPU run with that KV type.
//
// Runs wherever cuda_available(): on a GPU, and in the emulation build (-DDELTAGATE_CUDA_EMU=ON) on the
// CPU, where one conversation also runs under a seeded random order of the emulated threads and blocks
// (engine/cuda/emu/emu.h): a race would change tokens. Skips elsewhere.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <random>

#include "tests/unit/scheduler/sched_test_util.h"

#ifdef DG_CUDA_EMU
#include "engine/cuda/emu/emu.h"
#endif

namespace dg::sched {
namespace {

using testing::cold_greedy;
using testing::greedy_request;
using testing::Harness;
using testing::Outcome;
using testing::random_tokens;

#define SKIP_WITHOUT_CUDA() \
    if (!cuda_available()) GTEST_SKIP() << "no CUDA backend here (no device, and not the emulation build)"

int g_cuda_tests = 0;  // tests that ran on the CUDA backend (not skipped), printed at the end
class CountReport : public ::testing::Environment {
public:
    void TearDown() override {
        if (g_cuda_tests > 0) std::printf("[ CUDA     ] %d scheduler exactness tests ran on the CUDA backend\n", g_cuda_tests);
    }
};
const auto* const g_report = ::testing::AddGlobalTestEnvironment(new CountReport);

CacheOptions cache_of(DType kv, int32_t n_blocks = 256, int32_t block_tokens = 16) {
    CacheOptions c;
    c.kv_type = kv;
    c.block_tokens = block_tokens;
    c.n_blocks = n_blocks;
    return c;
}

// The cold CPU run (the oracle). With `also_cuda`, a cold CUDA run (the engine's Runner, no scheduler)
// must give the same tokens: only some tests do it, the emulated run costs seconds.
std::vector<int32_t> cold_cpu(const std::string& fixture, const std::vector<int32_t>& prompt, int32_t n, DType kv,
                              bool also_cuda = false) {
    const auto cpu = cold_greedy(fixture, prompt, n, kv, BackendKind::kCpuExact);
    if (also_cuda) {
        const auto gpu = cold_greedy(fixture, prompt, n, kv, BackendKind::kCudaExact);
        EXPECT_EQ(gpu, cpu) << fixture << " kv " << dtype_info(kv).name << ": cold CUDA run differs from cold CPU run";
    }
    return cpu;
}

#ifdef DG_CUDA_EMU
struct ScheduleScope {
    explicit ScheduleScope(emu::Schedule s) { emu::set_schedule(s); }
    ~ScheduleScope() { emu::set_schedule({emu::Order::kForward, 0}); }
};
#endif

struct MultiTurnCase {
    std::string fixture;
    int32_t spare_slots;  // 0: every checkpoint lives in host RAM
    DType kv;
    bool random_schedule;  // emulation only (a GPU runs it as the plain case): a seeded random order
};
class CudaMultiTurn : public ::testing::TestWithParam<MultiTurnCase> {};

// A conversation whose every turn resumes from the previous turn's end-of-generation checkpoint (inside
// a block: its tail block is copied with kv_copy_block), as exactness_test.cpp's MultiTurnTest.
TEST_P(CudaMultiTurn, ResumedTurnsMatchColdCudaAndCpu) {
    SKIP_WITHOUT_CUDA();
    ++g_cuda_tests;
    const auto& P = GetParam();
#ifdef DG_CUDA_EMU
    ScheduleScope scope(P.random_schedule ? emu::Schedule{emu::Order::kRandom, 99} : emu::Schedule{});
#endif
    SchedulerOptions opt;
    opt.spare_slots = P.spare_slots;
    Harness h(P.fixture, cache_of(P.kv), opt, BackendKind::kCudaExact);
    ASSERT_NE(h.loop, nullptr);
    std::mt19937 rng(7);
    std::vector<int32_t> history = random_tokens(rng, 37);
    int32_t expect_cached = 0;
    for (int turn = 0; turn < 3; ++turn) {
        const int32_t gen = 6 + turn;
        Outcome o = h.run_greedy(history, gen);
        EXPECT_EQ(o.tokens[0], cold_cpu(P.fixture, history, gen, P.kv, /*also_cuda=*/turn == 0)) << "turn " << turn;
        EXPECT_EQ(o.usage.cached_tokens_device + o.usage.cached_tokens_host, expect_cached) << "turn " << turn;
        if (P.spare_slots == 0) {
            EXPECT_EQ(o.usage.cached_tokens_device, 0);
        }
        expect_cached = int32_t(history.size()) + gen - 1;
        history.insert(history.end(), o.tokens[0].begin(), o.tokens[0].end());
        const auto user = random_tokens(rng, 5 + 4 * turn);
        history.insert(history.end(), user.begin(), user.end());
    }
}

INSTANTIATE_TEST_SUITE_P(Paths, CudaMultiTurn,
                         ::testing::Values(MultiTurnCase{"dense", 8, DType::F32, false},
                                           MultiTurnCase{"dense", 0, DType::F16, false},
                                           MultiTurnCase{"dense", 8, DType::F32, true},
                                           MultiTurnCase{"moe", 2, DType::F16, false},
                                           MultiTurnCase{"tied_vlm", 8, DType::Q8_0, false}),
                         [](const auto& i) {
                             return i.param.fixture + "_spare" + std::to_string(i.param.spare_slots) + "_" +
                                    std::string(dtype_info(i.param.kv).name) +
                                    (i.param.random_schedule ? "_random_schedule" : "");
                         });

// A hinted checkpoint at the end of a shared prefix serves a second request: full KV blocks shared, the
// partial one copied on the device.
TEST(CudaPrefixSharing, HintedCheckpointServesAnotherRequest) {
    SKIP_WITHOUT_CUDA();
    ++g_cuda_tests;
    Harness h("dense", cache_of(DType::F32), {}, BackendKind::kCudaExact);
    ASSERT_NE(h.loop, nullptr);
    std::mt19937 rng(11);
    const auto system = random_tokens(rng, 40);
    auto a = system, b = system;
    for (int32_t t : random_tokens(rng, 9)) a.push_back(t);
    for (int32_t t : random_tokens(rng, 13)) b.push_back(t);
    Request ra = greedy_request(a, 5);
    ra.checkpoint_at = {40};
    ASSERT_TRUE(h.submit(ra).ok());
    ASSERT_TRUE(h.loop->run_until_idle().ok());
    Outcome ob = h.run_greedy(b, 7);
    EXPECT_EQ(ob.usage.cached_tokens_device, 40);
    EXPECT_EQ(ob.tokens[0], cold_cpu("dense", b, 7, DType::F32));
    EXPECT_EQ(h.outcomes.begin()->second.tokens[0], cold_cpu("dense", a, 5, DType::F32));
}

// n > 1: one prefill, the state slot copied on the device (state_copy), full blocks shared, the partial
// block copied (kv_copy_block).
TEST(CudaFork, GreedyChildrenMatchColdRuns) {
    SKIP_WITHOUT_CUDA();
    ++g_cuda_tests;
    Harness h("dense", cache_of(DType::F16), {}, BackendKind::kCudaExact);
    ASSERT_NE(h.loop, nullptr);
    std::mt19937 rng(14);
    const auto p = random_tokens(rng, 45);
    Outcome o = h.run_greedy(p, 8, /*n=*/3);
    const auto cold = cold_cpu("dense", p, 8, DType::F16);
    ASSERT_EQ(o.tokens.size(), 3u);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(o.tokens[i], cold) << "child " << i;
    EXPECT_EQ(o.usage.prefill_tokens, 45);
}

// One running slot: the children wait and resume from the prompt-end checkpoint (state_download /
// state_upload through host RAM when no spare slot holds it).
TEST(CudaFork, ChildrenWithoutSlotsResumeFromPromptCheckpoint) {
    SKIP_WITHOUT_CUDA();
    ++g_cuda_tests;
    SchedulerOptions opt;
    opt.max_running = 1;
    opt.spare_slots = 0;
    Harness h("moe", cache_of(DType::F32), opt, BackendKind::kCudaExact);
    ASSERT_NE(h.loop, nullptr);
    std::mt19937 rng(15);
    const auto p = random_tokens(rng, 32);  // ends on a block boundary
    Outcome o = h.run_greedy(p, 5, /*n=*/3);
    const auto cold = cold_cpu("moe", p, 5, DType::F32);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(o.tokens[i], cold) << "child " << i;
    EXPECT_EQ(o.usage.prefill_tokens, 32);
}

// Explicit preemption mid-generation: state to a checkpoint, blocks kept; resumes without recomputing.
TEST(CudaPreemption, ResumesWithoutRecomputing) {
    SKIP_WITHOUT_CUDA();
    ++g_cuda_tests;
    Harness h("dense", cache_of(DType::F32), {}, BackendKind::kCudaExact);
    ASSERT_NE(h.loop, nullptr);
    std::mt19937 rng(17);
    const auto p1 = random_tokens(rng, 29), p2 = random_tokens(rng, 34);
    RequestId a = *h.submit(greedy_request(p1, 12));
    RequestId b = *h.submit(greedy_request(p2, 12));
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(h.loop->step().ok());
    ASSERT_TRUE(h.loop->preempt(a).ok());
    ASSERT_TRUE(h.loop->step().ok());
    ASSERT_TRUE(h.loop->preempt(b).ok());
    ASSERT_TRUE(h.loop->run_until_idle().ok());
    ASSERT_TRUE(h.loop->check_invariants().ok()) << h.loop->check_invariants();
    for (auto [id, p] : {std::pair{a, p1}, std::pair{b, p2}}) {
        const Outcome& o = h.outcomes[id];
        EXPECT_EQ(o.tokens.at(0), cold_cpu("dense", p, 12, DType::F32));
        EXPECT_EQ(o.usage.preemptions, 1);
        EXPECT_EQ(o.usage.recomputed_tokens, 0);
    }
}

// A KV pool too small for everything at once: preemptions under memory pressure, resumed from
// checkpoints or recomputed, every request exact.
TEST(CudaPreemption, MemoryPressureKeepsEveryRequestExact) {
    SKIP_WITHOUT_CUDA();
    ++g_cuda_tests;
    SchedulerOptions opt;
    opt.max_running = 4;
    opt.spare_slots = 2;
    Harness h("dense", cache_of(DType::F32, /*n_blocks=*/14, /*block_tokens=*/8), opt, BackendKind::kCudaExact);
    ASSERT_NE(h.loop, nullptr);
    std::mt19937 rng(18);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<RequestId> ids;
    for (int i = 0; i < 5; ++i) {
        prompts.push_back(random_tokens(rng, 10 + 3 * i));
        ids.push_back(*h.submit(greedy_request(prompts.back(), 20)));
    }
    int32_t preemptions = 0;
    while (!h.loop->idle()) {
        ASSERT_TRUE(h.loop->step().ok());
        ASSERT_TRUE(h.loop->check_invariants().ok()) << h.loop->check_invariants();
    }
    for (int i = 0; i < 5; ++i) {
        const Outcome& o = h.outcomes[ids[i]];
        EXPECT_EQ(o.tokens.at(0), cold_cpu("dense", prompts[i], 20, DType::F32)) << "request " << i;
        preemptions += o.usage.preemptions;
    }
    EXPECT_GT(preemptions, 0);  // the pool really was too small
}

// Every golden fixture x every KV type: the fixture's generation prompt through the CUDA scheduler gives
// the greedy tokens of a cold CPU run (and of a cold CUDA run) with that KV type.
struct KvCase {
    std::string fixture;
    DType kv;
};
class CudaKvTypes : public ::testing::TestWithParam<KvCase> {};

TEST_P(CudaKvTypes, GreedyTokensMatchCpu) {
    SKIP_WITHOUT_CUDA();
    ++g_cuda_tests;
    const auto& P = GetParam();
    Harness h(P.fixture, cache_of(P.kv), {}, BackendKind::kCudaExact);
    ASSERT_NE(h.loop, nullptr);
    std::mt19937 rng(21);
    const std::vector<int32_t> prompt = random_tokens(rng, 23);  // ends inside the second block
    Outcome o = h.run_greedy(prompt, 12);
    EXPECT_EQ(o.tokens[0], cold_cpu(P.fixture, prompt, 12, P.kv, /*also_cuda=*/P.fixture == "dense"));
}

std::vector<KvCase> kv_cases() {
    std::vector<KvCase> v;
    for (const char* f : {"dense", "dense_dkdv", "moe", "tied_vlm"})
        for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) v.push_back({f, t});
    return v;
}
INSTANTIATE_TEST_SUITE_P(FixturesAndKvTypes, CudaKvTypes, ::testing::ValuesIn(kv_cases()),
                         [](const auto& i) { return i.param.fixture + "_" + std::string(dtype_info(i.param.kv).name); });


// Seeded sampling through the whole CUDA scheduler (tokens drawn on the device, engine/cuda/sampling.cu)
// gives the tokens of the same requests on the CPU scheduler (the host sampler), with penalties, top-k,
// top-p, min-p and a fork's children, and logprobs within rounding.
struct Drawn {
    std::map<int32_t, std::vector<int32_t>> tokens;  // per child
    std::map<int32_t, std::vector<float>> logprobs;
    std::map<int32_t, std::vector<int32_t>> top_ids;  // the top-n ids of every token, concatenated
};
Drawn run_sampled(const std::string& fixture, BackendKind kind, const Request& base) {
    Harness h(fixture, cache_of(DType::F32), {}, kind);
    Drawn d;
    if (!h.loop) return d;
    Request r = base;
    r.on_event = [&d](const Event& e) {
        if (e.token < 0) return;
        d.tokens[e.index].push_back(e.token);
        d.logprobs[e.index].push_back(e.logprob);
        for (const auto& [id, lp] : e.top_logprobs) d.top_ids[e.index].push_back(id);
    };
    EXPECT_TRUE(h.loop->submit(std::move(r)).ok());
    EXPECT_TRUE(h.loop->run_until_idle().ok());
    EXPECT_TRUE(h.loop->check_invariants().ok());
    return d;
}

TEST(CudaSeededSampling, SameTokensAsCpu) {
    SKIP_WITHOUT_CUDA();
    ++g_cuda_tests;
    std::mt19937 rng(21);
    const auto prompt = random_tokens(rng, 23);
    struct Case {
        std::string fixture;
        SamplingParams sp;
        int32_t n;
    };
    const std::vector<Case> cases = {
        {"dense", {.temperature = 1.f, .seed = 77}, 1},
        {"dense", {.temperature = 1.5f, .top_k = 40, .top_p = 0.95f, .min_p = 0.02f, .seed = 1234}, 3},
        {"dense",
         {.temperature = 0.8f, .top_p = 0.9f, .seed = 5, .repetition_penalty = 1.3f, .presence_penalty = 0.5f,
          .frequency_penalty = 0.4f},
         2},
        {"moe", {.temperature = 1.2f, .min_p = 0.05f, .seed = 9, .repetition_penalty = 0.9f}, 1},
    };
    int differs_from_greedy = 0;
    for (const Case& c : cases) {
        Request r;
        r.prompt = prompt;
        r.max_tokens = 8;
        r.ignore_eos = true;
        r.n = c.n;
        r.sampling = c.sp;
        r.top_logprobs = 3;
        const Drawn cpu = run_sampled(c.fixture, BackendKind::kCpuExact, r);
        const Drawn gpu = run_sampled(c.fixture, BackendKind::kCudaExact, r);
        ASSERT_EQ(cpu.tokens.size(), size_t(c.n)) << c.fixture << " seed " << c.sp.seed;
        for (int32_t i = 0; i < c.n; ++i) {
            SCOPED_TRACE(::testing::Message() << c.fixture << " seed " << c.sp.seed << " child " << i);
            EXPECT_EQ(gpu.tokens.at(i), cpu.tokens.at(i));
            EXPECT_EQ(gpu.top_ids.at(i), cpu.top_ids.at(i));
            ASSERT_EQ(gpu.logprobs.at(i).size(), cpu.logprobs.at(i).size());
            // The two backends' logits differ by float rounding (op by op tolerance), so do logprobs.
            for (size_t j = 0; j < cpu.logprobs.at(i).size(); ++j)
                EXPECT_NEAR(gpu.logprobs.at(i)[j], cpu.logprobs.at(i)[j], 1e-3f) << "token " << j;
            if (cpu.tokens.at(i) != cold_greedy(c.fixture, prompt, 8)) ++differs_from_greedy;
        }
    }
    EXPECT_GT(differs_from_greedy, 3) << "seeded sampling drew the greedy tokens: the comparison proves little";
}

}  // namespace
}  // namespace dg::sched
