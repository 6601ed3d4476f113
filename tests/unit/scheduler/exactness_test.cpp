// Exactness is the rule (DESIGN: Scheduler and caches): greedy tokens produced through every cache path
// (multi-turn resume from a checkpoint, prefix sharing, fork, preemption, host tier, periodic and hinted
// checkpoints) equal a cold run of the same prompt with the engine's Runner.
#include <gtest/gtest.h>

#include "tests/unit/scheduler/sched_test_util.h"

namespace dg::sched {
namespace {

using testing::cold_greedy;
using testing::greedy_request;
using testing::Harness;
using testing::Outcome;
using testing::random_tokens;

CacheOptions f32_cache(int32_t n_blocks = 256, int32_t block_tokens = 16) {
    CacheOptions c;
    c.kv_type = DType::F32;
    c.block_tokens = block_tokens;
    c.n_blocks = n_blocks;
    return c;
}

struct MultiTurnCase {
    std::string fixture;
    int32_t spare_slots;  // 0: every checkpoint lives in host RAM
    DType kv;
};

class MultiTurnTest : public ::testing::TestWithParam<MultiTurnCase> {};

// A conversation: each turn's prompt is the previous prompt + the reply + a new user message. From the
// second turn on, everything up to the last reply's final token comes from the end-of-generation
// checkpoint (at a position inside a block, so its tail block is copied), and the tokens match cold.
TEST_P(MultiTurnTest, ResumedTurnsMatchColdRuns) {
    const auto& P = GetParam();
    SchedulerOptions opt;
    opt.spare_slots = P.spare_slots;
    CacheOptions cache = f32_cache();
    cache.kv_type = P.kv;
    Harness h(P.fixture, cache, opt);
    std::mt19937 rng(7);
    std::vector<int32_t> history = random_tokens(rng, 37);
    int32_t expect_cached = 0;
    for (int turn = 0; turn < 4; ++turn) {
        const int32_t gen = 6 + turn;
        Outcome o = h.run_greedy(history, gen);
        EXPECT_EQ(o.tokens[0], cold_greedy(P.fixture, history, gen, P.kv)) << "turn " << turn;
        EXPECT_EQ(o.usage.cached_tokens_device + o.usage.cached_tokens_host, expect_cached) << "turn " << turn;
        if (P.spare_slots == 0) {
            EXPECT_EQ(o.usage.cached_tokens_device, 0);
        }
        EXPECT_EQ(o.usage.prefill_tokens, int32_t(history.size()) - expect_cached);
        expect_cached = int32_t(history.size()) + gen - 1;
        history.insert(history.end(), o.tokens[0].begin(), o.tokens[0].end());
        const auto user = random_tokens(rng, 5 + 4 * turn);
        history.insert(history.end(), user.begin(), user.end());
    }
}

INSTANTIATE_TEST_SUITE_P(Paths, MultiTurnTest,
                         ::testing::Values(MultiTurnCase{"dense", 8, DType::F32}, MultiTurnCase{"dense", 0, DType::F32},
                                           MultiTurnCase{"moe", 2, DType::F16}, MultiTurnCase{"tied_vlm", 8, DType::Q8_0}),
                         [](const auto& i) {
                             return i.param.fixture + "_spare" + std::to_string(i.param.spare_slots) + "_" +
                                    std::string(dtype_info(i.param.kv).name);
                         });

// A checkpoint hint at the end of a shared prefix lets a second request with a different suffix start
// there, sharing the full KV blocks and copying the partial one.
TEST(PrefixSharing, HintedCheckpointServesAnotherRequest) {
    Harness h("dense", f32_cache(), {});
    std::mt19937 rng(11);
    const auto system = random_tokens(rng, 40);
    auto a = system, b = system;
    for (int32_t t : random_tokens(rng, 9)) a.push_back(t);
    for (int32_t t : random_tokens(rng, 13)) b.push_back(t);

    Request ra = greedy_request(a, 5);
    ra.checkpoint_at = {40};
    ASSERT_TRUE(h.submit(ra).ok());
    ASSERT_TRUE(h.loop->run_until_idle().ok());
    const int32_t cached_before = h.loop->kv_pool().n_cached();
    Outcome ob = h.run_greedy(b, 7);
    EXPECT_EQ(ob.usage.cached_tokens_device, 40);
    EXPECT_EQ(ob.usage.prefill_tokens, int32_t(b.size()) - 40);
    EXPECT_EQ(ob.tokens[0], cold_greedy("dense", b, 7));
    EXPECT_GE(cached_before, 2);  // A's full blocks stayed cached for B
    EXPECT_EQ(h.outcomes.begin()->second.tokens[0], cold_greedy("dense", a, 5));
}

// Requests with the same prefix computed at the same time: both publish the same block hashes (one
// wins, the other's copy stays private) and both are exact.
TEST(PrefixSharing, ConcurrentEqualPrefixes) {
    Harness h("dense", f32_cache(), {});
    std::mt19937 rng(12);
    const auto shared = random_tokens(rng, 50);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<RequestId> ids;
    for (int i = 0; i < 3; ++i) {
        auto p = shared;
        for (int32_t t : random_tokens(rng, 3 + i)) p.push_back(t);
        prompts.push_back(p);
        ids.push_back(*h.submit(greedy_request(p, 6)));
    }
    ASSERT_TRUE(h.loop->run_until_idle().ok());
    ASSERT_TRUE(h.loop->check_invariants().ok()) << h.loop->check_invariants();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(h.outcomes[ids[i]].tokens[0], cold_greedy("dense", prompts[i], 6)) << i;
}

// A long prompt prefilled in chunks with a checkpoint every 64 tokens: a request that shares 150 tokens
// of it resumes from the checkpoint at 128 (block boundary: no tail block) and is exact.
TEST(PeriodicCheckpoints, LongPrefillCheckpointsServeLaterRequests) {
    SchedulerOptions opt;
    opt.checkpoint_every = 64;
    opt.token_budget = 100;  // chunks of the budget, cut at the checkpoint positions
    Harness h("dense", f32_cache(), opt);
    std::mt19937 rng(13);
    const auto longp = random_tokens(rng, 200);
    Outcome a = h.run_greedy(longp, 4);
    EXPECT_EQ(a.tokens[0], cold_greedy("dense", longp, 4));
    std::vector<int32_t> b(longp.begin(), longp.begin() + 150);
    for (int32_t t : random_tokens(rng, 10)) b.push_back(t);
    Outcome ob = h.run_greedy(b, 6);
    EXPECT_EQ(ob.usage.cached_tokens_device, 128);
    EXPECT_EQ(ob.tokens[0], cold_greedy("dense", b, 6));
}

// n > 1: one prefill, the slot copied device to device, full blocks shared, the partial block copied.
TEST(Fork, GreedyChildrenMatchColdRun) {
    Harness h("dense", f32_cache(), {});
    std::mt19937 rng(14);
    const auto p = random_tokens(rng, 45);
    Outcome o = h.run_greedy(p, 8, /*n=*/3);
    const auto cold = cold_greedy("dense", p, 8);
    ASSERT_EQ(o.tokens.size(), 3u);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(o.tokens[i], cold) << "child " << i;
    EXPECT_EQ(o.usage.prefill_tokens, 45);  // the prompt once
    EXPECT_EQ(o.usage.completion_tokens, 24);
    EXPECT_EQ(o.done_events, 1);
}

// With one sequence slot the children cannot fork directly: they wait and resume from the prompt-end
// checkpoint, still computing the prompt only once.
TEST(Fork, ChildrenWithoutSlotsResumeFromPromptCheckpoint) {
    SchedulerOptions opt;
    opt.max_running = 1;
    Harness h("dense", f32_cache(), opt);
    std::mt19937 rng(15);
    const auto p = random_tokens(rng, 32);  // ends on a block boundary
    Outcome o = h.run_greedy(p, 5, /*n=*/3);
    const auto cold = cold_greedy("dense", p, 5);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(o.tokens[i], cold) << "child " << i;
    EXPECT_EQ(o.usage.prefill_tokens, 32);
}

// Seeded sampling: fork child i draws exactly what a single request with child_seed(seed, i) draws.
TEST(Fork, SeededChildrenMatchSingleRequests) {
    Harness h("dense", f32_cache(), {});
    std::mt19937 rng(16);
    const auto p = random_tokens(rng, 21);
    Request r;
    r.prompt = p;
    r.n = 3;
    r.max_tokens = 10;
    r.ignore_eos = true;
    r.sampling = {.temperature = 1.5f, .top_k = 40, .top_p = 0.95f, .min_p = 0.02f, .seed = 1234};
    RequestId fork_id = *h.submit(r);
    ASSERT_TRUE(h.loop->run_until_idle().ok());
    for (int i = 0; i < 3; ++i) {
        Request single = r;
        single.n = 1;
        single.sampling.seed = child_seed(1234, i);
        Harness cold("dense", f32_cache(), {});
        RequestId sid = *cold.submit(single);
        ASSERT_TRUE(cold.loop->run_until_idle().ok());
        EXPECT_EQ(h.outcomes[fork_id].tokens[i], cold.outcomes[sid].tokens[0]) << "child " << i;
    }
}

// An explicit preemption mid-generation: the state becomes a checkpoint and its blocks stay cached, so
// re-admission recomputes nothing, and the tokens are those of an uninterrupted cold run.
TEST(Preemption, ResumesWithoutRecomputing) {
    Harness h("dense", f32_cache(), {});
    std::mt19937 rng(17);
    const auto p1 = random_tokens(rng, 29), p2 = random_tokens(rng, 34);
    RequestId a = *h.submit(greedy_request(p1, 12));
    RequestId b = *h.submit(greedy_request(p2, 12));
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(h.loop->step().ok());
    ASSERT_TRUE(h.loop->preempt(a).ok());
    ASSERT_TRUE(h.loop->check_invariants().ok()) << h.loop->check_invariants();
    ASSERT_TRUE(h.loop->step().ok());
    ASSERT_TRUE(h.loop->preempt(b).ok());
    ASSERT_TRUE(h.loop->run_until_idle().ok());
    ASSERT_TRUE(h.loop->check_invariants().ok()) << h.loop->check_invariants();
    for (auto [id, p] : {std::pair{a, p1}, std::pair{b, p2}}) {
        const Outcome& o = h.outcomes[id];
        EXPECT_EQ(o.tokens.at(0), cold_greedy("dense", p, 12));
        EXPECT_EQ(o.usage.preemptions, 1);
        EXPECT_EQ(o.usage.recomputed_tokens, 0);
        EXPECT_EQ(o.usage.prefill_tokens, int32_t(p.size()));
    }
}

// A KV pool too small for everything at once: decodes preempt the youngest sequences, which resume
// later (from their checkpoints when their blocks survived, else by recomputing) — all exact.
TEST(Preemption, MemoryPressureKeepsEveryRequestExact) {
    SchedulerOptions opt;
    opt.max_running = 4;
    opt.spare_slots = 2;
    Harness h("dense", f32_cache(/*n_blocks=*/14, /*block_tokens=*/8), opt);
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
        EXPECT_EQ(o.tokens.at(0), cold_greedy("dense", prompts[i], 20)) << "request " << i;
        preemptions += o.usage.preemptions;
    }
    EXPECT_GT(preemptions, 0);  // the pool really was too small
}

}  // namespace
}  // namespace dg::sched
