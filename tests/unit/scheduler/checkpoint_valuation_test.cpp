// Checkpoint valuation (state_cache.h, docs/scheduler.md "Checkpoint valuation"): issue 13's scenario
// scaled to the tiny golden model. 12 agent sessions of 4 turns, each turn interleaved with one-off
// requests, on a host budget that holds 54 checkpoint states and no spare device slots. Plain LRU keeps
// prompt-end checkpoints the same turn's end-of-generation checkpoint supersedes, and one-off requests'
// checkpoints, and so loses some live sessions' checkpoints; valuing checkpoints by what they can still
// save serves every later turn from its checkpoint.
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/unit/scheduler/sched_test_util.h"

namespace dg::sched {
namespace {

using testing::Harness;
using testing::Outcome;
using testing::random_tokens;

constexpr int32_t kSessions = 12, kTurns = 4, kStateBudget = 54;

struct ScenarioResult {
    int32_t later_turns = 0;
    int32_t full_hits = 0;     // resumed from the previous turn's end-of-generation checkpoint
    int32_t partial_hits = 0;  // resumed from an earlier position only
    int32_t misses = 0;        // computed from scratch
    StateCacheStats stats;
};

// `n_blocks`: the device KV pool; small, blocks spill to host RAM and share the budget with the states
// (`budget_states` of them, in bytes).
ScenarioResult run_scenario(CheckpointPolicy policy, bool session_ids, int32_t n_blocks = 1024,
                            int32_t budget_states = kStateBudget) {
    SchedulerOptions opt;
    opt.max_running = 4;
    opt.spare_slots = 0;  // every checkpoint in host RAM, as on the worker
    opt.checkpoint_policy = policy;
    CacheOptions cache;
    cache.kv_type = DType::F32;
    cache.block_tokens = 16;
    cache.n_blocks = n_blocks;  // 1024: the device pool keeps every block, the budget is the checkpoints'
    // A probe loop gives the state size of the fixture: the budget holds kStateBudget states.
    {
        Harness probe("dense", cache, opt);
        opt.host_cache_bytes = budget_states * probe.loop->state_cache().state_bytes();
    }
    Harness h("dense", cache, opt);
    std::mt19937 rng(1313);
    std::vector<std::vector<int32_t>> history(kSessions);  // each session's tokens so far
    for (int32_t s = 0; s < kSessions; ++s) history[s] = random_tokens(rng, 24 + int32_t(rng() % 24));
    ScenarioResult res;
    std::uniform_int_distribution<int32_t> one_offs(0, 2), user_len(6, 20), one_off_len(20, 70);
    for (int32_t turn = 0; turn < kTurns; ++turn) {
        for (int32_t s = 0; s < kSessions; ++s) {
            std::vector<int32_t> prompt = history[s];
            const int32_t resumable = int32_t(prompt.size()) - 1;  // the last turn's end-of-generation checkpoint
            if (turn > 0) {
                const auto user = random_tokens(rng, user_len(rng));
                prompt.insert(prompt.end(), user.begin(), user.end());
            }
            Request r = testing::greedy_request(prompt, 8);
            if (session_ids) r.session_id = 1000 + s;
            auto id = h.submit(std::move(r));
            EXPECT_TRUE(id.ok());
            EXPECT_TRUE(h.loop->run_until_idle().ok());
            const Outcome& o = h.outcomes[*id];
            const int32_t cached = o.usage.cached_tokens_device + o.usage.cached_tokens_host;
            if (turn > 0) {
                ++res.later_turns;
                if (cached == resumable) ++res.full_hits;
                else if (cached > 0) ++res.partial_hits;
                else ++res.misses;
            }
            history[s] = prompt;
            history[s].insert(history[s].end(), o.tokens.at(0).begin(), o.tokens.at(0).end());
            for (int32_t k = one_offs(rng); k > 0; --k) {
                Request q = testing::greedy_request(random_tokens(rng, one_off_len(rng)), 8);
                EXPECT_TRUE(h.submit(std::move(q)).ok());
                EXPECT_TRUE(h.loop->run_until_idle().ok());
            }
        }
    }
    EXPECT_TRUE(h.loop->check_invariants().ok()) << h.loop->check_invariants();
    res.stats = h.loop->state_cache().stats();
    std::printf("%4d blocks %-5s %-16s later turns %d: %d resumed at the last reply's end, %d from an earlier point, %d cold; "
                "checkpoints put %lld, dropped %lld, host hits %lld\n",
                n_blocks, policy == CheckpointPolicy::kLru ? "lru" : "value", session_ids ? "with sessions" : "without sessions",
                res.later_turns, res.full_hits, res.partial_hits, res.misses, (long long)res.stats.puts,
                (long long)res.stats.drops, (long long)res.stats.host_hits);
    if (n_blocks < 1024)
        std::printf("     KV blocks to host RAM %lld, back %lld, dropped from host %lld\n", (long long)res.stats.block_spills,
                    (long long)res.stats.block_restores, (long long)res.stats.block_drops);
    return res;
}

TEST(CheckpointValuation, AgentSessionsEveryLaterTurnFindsItsCheckpoint) {
    const ScenarioResult value = run_scenario(CheckpointPolicy::kValue, /*session_ids=*/true);
    EXPECT_EQ(value.later_turns, kSessions * (kTurns - 1));
    EXPECT_EQ(value.full_hits, value.later_turns);
    // The budget really is tight: the same workload under plain LRU loses some sessions' checkpoints.
    const ScenarioResult lru = run_scenario(CheckpointPolicy::kLru, /*session_ids=*/true);
    EXPECT_LT(lru.full_hits, lru.later_turns);
    EXPECT_GT(lru.stats.drops, 0);
    // Without session ids (the worker API does not carry them yet) superseding and prefix length alone.
    const ScenarioResult anon = run_scenario(CheckpointPolicy::kValue, /*session_ids=*/false);
    EXPECT_GE(anon.full_hits, lru.full_hits);
}

// The same with a device pool of 96 blocks (1,536 tokens, less than the sessions' histories): their KV
// blocks spill to host RAM and share the budget (here 54 states plus 60 blocks).
TEST(CheckpointValuation, AgentSessionsWithKvBlocksInHostRam) {
    const int32_t budget = kStateBudget + 20;  // a state is 3 blocks of this fixture (24,192 vs 8,192 bytes)
    const ScenarioResult value = run_scenario(CheckpointPolicy::kValue, true, 96, budget);
    EXPECT_GT(value.stats.block_restores, 0);
    EXPECT_EQ(value.full_hits, value.later_turns);
    const ScenarioResult lru = run_scenario(CheckpointPolicy::kLru, true, 96, budget);
    EXPECT_LT(lru.full_hits, value.full_hits);
}

}  // namespace
}  // namespace dg::sched
