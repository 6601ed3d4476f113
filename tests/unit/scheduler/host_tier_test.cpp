// The host-RAM tier of the KV cache (state_cache.h, docs/scheduler.md "KV blocks in host RAM"): KV blocks
// the device pool evicts, and the tail blocks of checkpoints under KV pressure, go to host RAM and come
// back by upload instead of being recomputed; the tokens stay those of a cold run. The CPU half of it;
// cuda_exactness_test.cpp runs the preemption case through the CUDA backend.
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/unit/scheduler/sched_test_util.h"

namespace dg::sched {
namespace {

using testing::cold_greedy;
using testing::greedy_request;
using testing::Harness;
using testing::Outcome;
using testing::random_tokens;

CacheOptions small_pool(int32_t n_blocks, int32_t block_tokens = 8) {
    CacheOptions c;
    c.kv_type = DType::F32;
    c.block_tokens = block_tokens;
    c.n_blocks = n_blocks;
    return c;
}

struct PreemptRun {
    Outcome a, b;
    StateCacheStats stats;
    std::vector<int32_t> pa, pb;
};

// A is preempted mid-generation; B, of higher priority, then needs every block of the pool, so A's
// cached blocks are evicted and the checkpoint's tail block released under KV pressure; A resumes once
// B is done.
PreemptRun preempt_and_evict(bool spill, BackendKind backend = BackendKind::kCpuExact) {
    constexpr int32_t kBlocks = 12, kBt = 8;
    SchedulerOptions opt;
    opt.max_running = 2;
    opt.spare_slots = 2;
    opt.spill_kv_to_host = spill;
    Harness h("dense", small_pool(kBlocks, kBt), opt, backend);
    std::mt19937 rng(41);
    PreemptRun run;
    run.pa = random_tokens(rng, 37);
    run.pb = random_tokens(rng, 80);
    const RequestId a = *h.submit(greedy_request(run.pa, 24));
    for (int i = 0; i < 6; ++i) EXPECT_TRUE(h.loop->step().ok());
    EXPECT_TRUE(h.loop->preempt(a).ok());
    EXPECT_TRUE(h.loop->check_invariants().ok()) << h.loop->check_invariants();
    Request rb = greedy_request(run.pb, kBlocks * kBt - 80);  // 80 + 16 tokens: all 12 blocks
    rb.priority = 1;
    const RequestId b = *h.submit(std::move(rb));
    while (!h.loop->idle()) {
        EXPECT_TRUE(h.loop->step().ok());
        EXPECT_TRUE(h.loop->check_invariants().ok()) << h.loop->check_invariants();
    }
    run.a = h.outcomes[a];
    run.b = h.outcomes[b];
    run.stats = h.loop->state_cache().stats();
    std::printf("spill %s: A prefill %d recomputed %d preemptions %d; KV blocks evicted %lld, to host %lld, back %lld, "
                "tails to host %lld\n",
                spill ? "on" : "off", run.a.usage.prefill_tokens, run.a.usage.recomputed_tokens, run.a.usage.preemptions,
                (long long)h.loop->kv_pool().n_evicted(), (long long)run.stats.block_spills,
                (long long)run.stats.block_restores, (long long)run.stats.tail_spills);
    return run;
}

TEST(HostTier, PreemptedSequenceResumesFromHostRamWithoutRecomputing) {
    const PreemptRun run = preempt_and_evict(/*spill=*/true);
    EXPECT_GE(run.a.usage.preemptions, 1);  // pressure may preempt it again: it still recomputes nothing
    EXPECT_EQ(run.a.usage.prefill_tokens, int32_t(run.pa.size()));  // the prompt was computed once
    EXPECT_EQ(run.a.usage.recomputed_tokens, 0);                     // and no generated token again
    EXPECT_GE(run.stats.block_restores, int32_t(run.pa.size()) / 8);  // its full blocks came back from host RAM
    EXPECT_GE(run.stats.tail_spills, 1);                              // and its partial block too
    EXPECT_EQ(run.a.tokens.at(0), cold_greedy("dense", run.pa, 24));
    EXPECT_EQ(run.b.tokens.at(0), cold_greedy("dense", run.pb, 16));
}

// Through the CUDA backend (a GPU, or the CPU emulation of CUDA): kv_download_block / kv_upload_block on
// the device, the tokens still those of the cold CPU run.
TEST(HostTier, PreemptedSequenceResumesFromHostRamOnCuda) {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA backend here (no device, and not the emulation build)";
    const PreemptRun run = preempt_and_evict(/*spill=*/true, BackendKind::kCudaExact);
    EXPECT_EQ(run.a.usage.prefill_tokens, int32_t(run.pa.size()));
    EXPECT_EQ(run.a.usage.recomputed_tokens, 0);
    EXPECT_GE(run.stats.block_restores, int32_t(run.pa.size()) / 8);
    EXPECT_GE(run.stats.tail_spills, 1);
    EXPECT_EQ(run.a.tokens.at(0), cold_greedy("dense", run.pa, 24));
    EXPECT_EQ(run.b.tokens.at(0), cold_greedy("dense", run.pb, 16));
}

// The same without the tier: the evicted blocks are lost, the checkpoint with them, and A recomputes.
// (This is what the test above would see if the tier did nothing.)
TEST(HostTier, WithoutSpillThePreemptedSequenceRecomputes) {
    const PreemptRun run = preempt_and_evict(/*spill=*/false);
    EXPECT_EQ(run.stats.block_spills, 0);
    EXPECT_GT(run.a.usage.prefill_tokens + run.a.usage.recomputed_tokens, int32_t(run.pa.size()));
    EXPECT_EQ(run.a.tokens.at(0), cold_greedy("dense", run.pa, 24));
}

// A finished conversation turn whose cached blocks another request evicted: the next turn uploads them
// (and the checkpoint) from host RAM, reports the resumed tokens under the host tier, and stays exact.
TEST(HostTier, EvictedPrefixComesBackForTheNextTurn) {
    SchedulerOptions opt;
    opt.max_running = 1;
    opt.spare_slots = 2;
    Harness h("dense", small_pool(10), opt);
    std::mt19937 rng(43);
    const auto p1 = random_tokens(rng, 40);
    const Outcome t1 = h.run_greedy(p1, 6);
    const Outcome other = h.run_greedy(random_tokens(rng, 70), 8);  // 78 tokens: every block of the pool
    EXPECT_GT(h.loop->state_cache().n_host_blocks(), 0);
    auto p2 = p1;
    p2.insert(p2.end(), t1.tokens.at(0).begin(), t1.tokens.at(0).end());
    const auto user = random_tokens(rng, 9);
    p2.insert(p2.end(), user.begin(), user.end());
    const Outcome t2 = h.run_greedy(p2, 6);
    EXPECT_EQ(t2.usage.cached_tokens_host, int32_t(p1.size()) + 6 - 1);  // up to the end-of-generation checkpoint
    EXPECT_EQ(t2.usage.cached_tokens_device, 0);
    EXPECT_EQ(t2.usage.prefill_tokens, int32_t(p2.size()) - t2.usage.cached_tokens_host);
    EXPECT_GT(h.loop->state_cache().stats().block_restores, 0);
    EXPECT_EQ(t2.tokens.at(0), cold_greedy("dense", p2, 6));
    const LoadDigest d = h.loop->digest();
    EXPECT_EQ(d.kv_blocks_host, h.loop->state_cache().n_host_blocks());
    EXPECT_LE(d.host_bytes, d.host_budget);
}

// Host blocks share the checkpoints' budget: a budget of a few states holds few blocks, everything stays
// within it, and what cannot be kept is dropped (counted), never overcommitted.
TEST(HostTier, BlocksAndStatesShareOneBudget) {
    SchedulerOptions opt;
    opt.max_running = 2;
    opt.spare_slots = 0;
    Harness probe("dense", small_pool(10), opt);
    const int64_t state = probe.loop->state_cache().state_bytes(), block = probe.loop->state_cache().block_bytes();
    ASSERT_GT(block, 0);
    opt.host_cache_bytes = 2 * state + 3 * block;
    Harness h("dense", small_pool(10), opt);
    std::mt19937 rng(44);
    for (int i = 0; i < 6; ++i) {
        const auto p = random_tokens(rng, 30 + 7 * i);
        const Outcome o = h.run_greedy(p, 5);
        EXPECT_EQ(o.tokens.at(0), cold_greedy("dense", p, 5)) << "request " << i;
        EXPECT_LE(h.loop->state_cache().host_bytes(), opt.host_cache_bytes);
    }
    const StateCacheStats& st = h.loop->state_cache().stats();
    EXPECT_GT(st.block_spills, 0);
    EXPECT_GT(st.block_drops + st.block_lost + st.drops, 0);
}

// StateCache alone, over the fixture's CPU backend (an idle loop's: its slots and blocks are unused).
struct CacheFixture {
    Harness h{"dense", small_pool(16), [] {
                  SchedulerOptions o;
                  o.max_running = 1;
                  o.spare_slots = 2;
                  return o;
              }()};
    Backend& be = h.loop->model().backend();
    StateSlotPool slots{1, 2};
    KvBlockPool pool{16, 8};
    std::vector<float> state_with(float v) { return std::vector<float>(be.state_floats(), v); }
    void fill_seq_slot(float v) { be.state_upload(0, state_with(v).data()); }
};

// A host checkpoint moves back into a spare slot when one frees, and restores the same state after.
TEST(StateCachePromotion, HostCheckpointReturnsToAFreedSpareSlot) {
    CacheFixture f;
    StateCacheOptions o;
    o.host_budget_bytes = 8 * f.be.state_floats() * 4;
    StateCache c(&f.be, &f.slots, &f.pool, o);
    const uint64_t kA = 1, kB = 2, kC = 3;
    // Positions inside the first block: each checkpoint holds its tail block and needs no full block.
    f.fill_seq_slot(1.f);
    ASSERT_EQ(c.put(kA, 3, 0, f.pool.allocate().value(), {}), Tier::kDevice);
    f.fill_seq_slot(2.f);
    ASSERT_EQ(c.put(kB, 5, 0, f.pool.allocate().value(), {}), Tier::kDevice);
    f.fill_seq_slot(3.f);
    ASSERT_EQ(c.put(kC, 7, 0, f.pool.allocate().value(), {}), Tier::kDevice);  // kA (shortest) went to host RAM
    EXPECT_EQ(c.find(kA)->tier, Tier::kHost);
    EXPECT_EQ(c.stats().spills, 1);
    c.drop(kB);
    EXPECT_EQ(c.find(kA)->tier, Tier::kDevice);  // promoted into the freed slot
    EXPECT_EQ(c.stats().promotions, 1);
    EXPECT_EQ(c.n_host(), 0);
    EXPECT_EQ(c.host_bytes(), 0);
    ASSERT_TRUE(c.check().ok()) << c.check();
    f.fill_seq_slot(0.f);
    c.restore(kA, 0);
    std::vector<float> got(f.be.state_floats());
    f.be.state_download(0, got.data());
    EXPECT_EQ(got, f.state_with(1.f));
}

// What the eviction order sees: a checkpoint is worth its position, a fraction once superseded, more
// while its session is live, nothing once a block before it is gone, and less as it ages untouched.
TEST(StateCacheValuation, SupersededSessionAgeAndMissingBlocks) {
    CacheFixture f;
    StateCacheOptions o;
    o.host_budget_bytes = 8 * f.be.state_floats() * 4;
    StateCache c(&f.be, &f.slots, &f.pool, o);
    f.fill_seq_slot(1.f);
    c.put(1, 5, 0, f.pool.allocate().value(), {});  // pos 5 < one block: no full block needed
    c.put(2, 7, 0, f.pool.allocate().value(), {});
    EXPECT_DOUBLE_EQ(c.value(2), 7);  // just taken
    const double aged = c.value(1);   // one checkpoint event old
    EXPECT_LT(aged, 5);
    EXPECT_GT(aged, 4);
    c.mark_extended(1);
    EXPECT_DOUBLE_EQ(c.value(1), aged / 16);
    c.restore(1, 0);  // used: young again (one restore still counts as superseded)
    EXPECT_DOUBLE_EQ(c.value(1), 5.0 / 16);
    c.await(1);  // a waiting sequence will resume from it: a certain hit, not superseded
    EXPECT_DOUBLE_EQ(c.value(1), 5.0 * 16);
    c.unawait(1);
    c.unawait(1);  // never below zero
    EXPECT_DOUBLE_EQ(c.value(1), 5.0 / 16);
    CheckpointMeta live;
    live.session = 77;
    c.touch_session(77);
    c.put(3, 6, 0, f.pool.allocate().value(), live);
    EXPECT_DOUBLE_EQ(c.value(3), 4 * 6);
    CheckpointMeta far;
    far.chain = 0xfeed;  // a block hash nobody holds
    c.put(4, 8, 0, -1, far);
    EXPECT_DOUBLE_EQ(c.value(4), 0);
    ASSERT_TRUE(c.check().ok()) << c.check();
}

// Value decides admission too: host RAM full of a live session's checkpoints does not take a one-off
// request's shorter one, where plain LRU evicts the oldest session checkpoint for it.
TEST(StateCacheValuation, LessValuableEntryIsNotAdmittedOverMoreValuableOnes) {
    for (CheckpointPolicy policy : {CheckpointPolicy::kValue, CheckpointPolicy::kLru}) {
        CacheFixture f;
        StateSlotPool no_spares{1, 0};
        StateCacheOptions o;
        o.host_budget_bytes = 2 * f.be.state_floats() * 4;
        o.policy = policy;
        StateCache c(&f.be, &no_spares, &f.pool, o);
        f.fill_seq_slot(1.f);
        CheckpointMeta live;
        live.session = 9;
        c.touch_session(9);
        ASSERT_EQ(c.put(1, 7, 0, f.pool.allocate().value(), live), Tier::kHost);
        ASSERT_EQ(c.put(2, 6, 0, f.pool.allocate().value(), live), Tier::kHost);
        const std::optional<Tier> t = c.put(3, 5, 0, f.pool.allocate().value(), {});
        if (policy == CheckpointPolicy::kValue) {
            EXPECT_FALSE(t.has_value());
            EXPECT_NE(c.find(1), nullptr);
            EXPECT_EQ(c.find(3), nullptr);
        } else {
            EXPECT_EQ(t, Tier::kHost);
            EXPECT_EQ(c.find(1), nullptr);  // the oldest went
        }
        EXPECT_NE(c.find(2), nullptr);
        ASSERT_TRUE(c.check().ok()) << c.check();
    }
}

}  // namespace
}  // namespace dg::sched
