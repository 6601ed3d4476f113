// Random sequences of submit / step / cancel / preempt on a deliberately small worker (few blocks,
// slots and spare slots, a host tier of three states that spilled KV blocks share too; both checkpoint
// policies): after every operation no block, slot or
// checkpoint reference leaks, every request ends with exactly one final event, greedy requests that
// ran to their length are exact, and an idle worker holds only its caches.
#include <gtest/gtest.h>

#include "tests/unit/scheduler/sched_test_util.h"

namespace dg::sched {
namespace {

using testing::cold_greedy;
using testing::Harness;
using testing::random_tokens;

class Invariants : public ::testing::TestWithParam<CheckpointPolicy> {};

TEST_P(Invariants, RandomSubmitCancelPreempt) {
    CacheOptions cache;
    cache.kv_type = DType::F32;
    cache.block_tokens = 8;
    cache.n_blocks = 30;
    SchedulerOptions opt;
    opt.max_running = 3;
    opt.spare_slots = 2;
    opt.token_budget = 24;
    opt.checkpoint_every = 16;
    opt.checkpoint_policy = GetParam();
    Harness h("dense", cache, opt);
    {
        // The host tier holds three states.
        SchedulerOptions o2 = opt;
        o2.host_cache_bytes = 3 * h.loop->model().backend().state_floats() * 4;
        h = Harness("dense", cache, o2);
    }
    std::mt19937 rng(2024), session_rng(7);
    const std::vector<std::vector<int32_t>> bases = {random_tokens(rng, 20), random_tokens(rng, 33), random_tokens(rng, 9)};
    std::map<RequestId, Request> submitted;
    std::vector<RequestId> ids;
    for (int op = 0; op < 400; ++op) {
        const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
        if (kind <= 2 && submitted.size() < 40) {
            Request r;
            r.prompt = bases[rng() % bases.size()];
            r.prompt.resize(std::uniform_int_distribution<size_t>(1, r.prompt.size())(rng));
            for (int32_t t : random_tokens(rng, std::uniform_int_distribution<int>(0, 12)(rng))) r.prompt.push_back(t);
            r.max_tokens = std::uniform_int_distribution<int>(1, 12)(rng);
            r.n = std::uniform_int_distribution<int>(1, 3)(rng);
            r.priority = std::uniform_int_distribution<int>(0, 2)(rng);
            r.ignore_eos = true;
            if (rng() % 3 == 0) r.checkpoint_at = {int32_t(1 + rng() % r.prompt.size())};
            if (rng() % 4 == 0) r.sampling = {.temperature = 0.9f, .top_k = 20, .seed = rng()};
            r.session_id = session_rng() % 4;  // 0: none (its own generator: the workload stays as it was)
            auto id = h.submit(r);
            ASSERT_TRUE(id.ok()) << id.status();
            submitted[*id] = r;
            ids.push_back(*id);
        } else if (kind == 3 && !ids.empty() && rng() % 3 == 0) {
            (void)h.loop->cancel(ids[rng() % ids.size()]);  // NotFound once it has finished: fine
        } else if (kind <= 4 && !ids.empty()) {
            // Preempt one of the live requests, the most recent ones first.
            for (size_t i = ids.size(); i-- > 0;)
                if (h.outcomes[ids[i]].done_events == 0 && rng() % 2 == 0) {
                    ASSERT_TRUE(h.loop->preempt(ids[i]).ok());
                    break;
                }
        } else {
            ASSERT_TRUE(h.loop->step().ok());
        }
        ASSERT_TRUE(h.loop->check_invariants().ok()) << "op " << op << ": " << h.loop->check_invariants();
    }
    ASSERT_TRUE(h.loop->run_until_idle().ok());
    ASSERT_TRUE(h.loop->check_invariants().ok()) << h.loop->check_invariants();

    // Idle: the only references left are the checkpoints' tail blocks; no sequence slot is in use.
    const LoadDigest d = h.loop->digest();
    EXPECT_EQ(d.running + d.waiting, 0);
    EXPECT_EQ(d.seq_slots_used, 0);
    int32_t tails = 0;
    for (const auto& [k, c] : h.loop->state_cache().entries()) tails += c.tail_block >= 0;
    EXPECT_LE(d.kv_blocks_referenced, tails);
    EXPECT_LE(d.host_bytes, d.host_budget);

    int32_t exact_checked = 0, cancelled = 0, preempted = 0;
    for (const auto& [id, r] : submitted) {
        const auto& o = h.outcomes[id];
        EXPECT_EQ(o.done_events, 1) << "request " << id;
        preempted += o.usage.preemptions;
        if (r.sampling.temperature != 0) continue;
        for (const auto& [child, toks] : o.tokens) {
            if (o.finish.at(child) != FinishReason::kLength) {
                ++cancelled;
                continue;
            }
            EXPECT_EQ(toks, cold_greedy("dense", r.prompt, r.max_tokens)) << "request " << id << " child " << child;
            ++exact_checked;
        }
    }
    const StateCacheStats& st = h.loop->state_cache().stats();
    std::printf("%zu requests: %d continuations checked exact, %d cut short, %d preemptions; checkpoint hits "
                "%lld device / %lld host, %lld spills, %lld drops, %lld promotions; %lld KV blocks evicted, %lld to host "
                "RAM, %lld back, %lld tails to host RAM\n",
                submitted.size(), exact_checked, cancelled, preempted, (long long)st.device_hits, (long long)st.host_hits,
                (long long)st.spills, (long long)st.drops, (long long)st.promotions, (long long)h.loop->kv_pool().n_evicted(),
                (long long)st.block_spills, (long long)st.block_restores, (long long)st.tail_spills);
    EXPECT_GT(exact_checked, 10);
    EXPECT_GT(cancelled, 0);
    EXPECT_GT(preempted, 0);
    EXPECT_GT(st.device_hits + st.host_hits, 0);
    EXPECT_GT(st.spills, 0);
    // Evicted blocks reached the host tier; under kValue a budget of three states may refuse them all
    // (each worth less than the states there), under kLru they go in.
    EXPECT_GT(st.block_spills + st.block_lost, 0);
    if (GetParam() == CheckpointPolicy::kLru) {
        EXPECT_GT(st.block_spills, 0);
    }
}

INSTANTIATE_TEST_SUITE_P(Policies, Invariants, ::testing::Values(CheckpointPolicy::kValue, CheckpointPolicy::kLru),
                         [](const auto& i) { return i.param == CheckpointPolicy::kLru ? "Lru" : "Value"; });

}  // namespace
}  // namespace dg::sched
