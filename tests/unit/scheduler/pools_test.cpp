// The data structures alone: prefix hashes, the KV block pool, the slot pool, the batch policy and the
// sampler.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "scheduler/batch_policy.h"
#include "scheduler/kv_block_pool.h"
#include "scheduler/prefix_hash.h"
#include "engine/det_exp.h"
#include "engine/philox.h"
#include "scheduler/sampling.h"
#include "scheduler/state_slot_pool.h"

namespace dg::sched {
namespace {

TEST(PrefixHash, EqualPrefixesEqualKeysAndSaltSeparates) {
    PrefixHasher a(0, 4), b(0, 4), c(9, 4);
    std::vector<int32_t> t = {1, 2, 3, 4, 5, 6};
    a.push(t);
    b.push(t);
    c.push(t);
    EXPECT_EQ(a.checkpoint_key(), b.checkpoint_key());
    EXPECT_EQ(a.chain(), b.chain());
    EXPECT_NE(a.checkpoint_key(), c.checkpoint_key());
    PrefixHasher d(0, 4);
    d.push(std::vector<int32_t>{1, 2, 3, 4, 5, 7});
    EXPECT_EQ(a.chain(), d.chain());  // same first block
    EXPECT_NE(a.checkpoint_key(), d.checkpoint_key());
    PrefixHasher e(0, 4);
    e.push(std::vector<int32_t>{1, 2, 3, 4, 5});
    EXPECT_NE(a.checkpoint_key(), e.checkpoint_key());  // a prefix is not the same key
}

TEST(PrefixHash, KeysAreStableAcrossProcesses) {
    // Fronts compute the same keys: the function must never change silently.
    PrefixHasher h(0, 4);
    h.push(std::vector<int32_t>{1, 2, 3, 4, 5});
    EXPECT_EQ(h.chain(), 5994160376406207195ull);
    EXPECT_EQ(h.checkpoint_key(), 14474180704696703077ull);
}

TEST(KvBlockPool, RefcountsCachingAndLruEviction) {
    KvBlockPool p(3, 2);
    const std::vector<int32_t> t1 = {1, 2}, t2 = {3, 4};
    int32_t a = *p.allocate(), b = *p.allocate(), c = *p.allocate();
    EXPECT_FALSE(p.allocate().has_value());
    EXPECT_TRUE(p.publish(a, 100, 0, t1));
    EXPECT_TRUE(p.publish(b, 200, 100, t2));
    EXPECT_FALSE(p.publish(c, 100, 0, t1));  // duplicate hash: c stays private
    p.ref(a);
    p.unref(a);
    EXPECT_EQ(p.refs(a), 1);
    p.unref(a);  // → cached
    p.unref(b);  // → cached (more recent)
    p.unref(c);  // → free
    EXPECT_EQ(p.n_free(), 1);
    EXPECT_EQ(p.n_cached(), 2);
    EXPECT_EQ(p.find(100, 0, t1), a);
    EXPECT_EQ(p.find(100, 0, t2), -1);  // tokens differ: a collision is a miss
    EXPECT_EQ(p.find(200, 7, t2), -1);  // parent differs
    EXPECT_TRUE(p.check().ok());
    EXPECT_EQ(*p.allocate(), c);      // free list first
    EXPECT_EQ(*p.allocate(), a);      // then the least recently used cached block
    EXPECT_EQ(p.find(100, 0, t1), -1);
    EXPECT_EQ(p.n_evicted(), 1);
    p.ref(b);  // a hit takes it out of the LRU list
    EXPECT_FALSE(p.allocate().has_value());
    std::vector<int32_t> expect = {1, 1, 1};
    EXPECT_TRUE(p.check(&expect).ok()) << p.check(&expect);
    expect[0] = 2;
    EXPECT_FALSE(p.check(&expect).ok());
}

TEST(StateSlotPool, KindsAreSeparate) {
    StateSlotPool s(2, 1);
    auto a = s.acquire(StateSlotPool::Kind::kSeq), b = s.acquire(StateSlotPool::Kind::kSeq);
    EXPECT_FALSE(s.acquire(StateSlotPool::Kind::kSeq).has_value());
    auto c = s.acquire(StateSlotPool::Kind::kSpare);
    EXPECT_EQ(*c, 2);
    EXPECT_FALSE(s.acquire(StateSlotPool::Kind::kSpare).has_value());
    s.release(*a);
    EXPECT_EQ(s.n_free(StateSlotPool::Kind::kSeq), 1);
    EXPECT_TRUE(s.check().ok());
    s.release(*b);
    s.release(*c);
    EXPECT_TRUE(s.check().ok());
}

TEST(BatchPolicy, ChunksEndAtCheckpointPositions) {
    EXPECT_EQ(next_chunk_end(0, 100, 100, 0, {}), 100);
    EXPECT_EQ(next_chunk_end(0, 100, 100, 32, {}), 32);
    EXPECT_EQ(next_chunk_end(32, 100, 100, 32, {40}), 40);
    EXPECT_EQ(next_chunk_end(96, 100, 100, 32, {}), 100);
    EXPECT_EQ(next_chunk_end(10, 60, 50, 0, {}), 50);  // resumed after the prompt: prompt end is a cut
    EXPECT_TRUE(is_checkpoint_position(64, 32, 100, 32, {}));
    EXPECT_FALSE(is_checkpoint_position(64, 1, 100, 32, {}));  // decodes do not checkpoint periodically
    EXPECT_TRUE(is_checkpoint_position(100, 4, 100, 0, {}));
    EXPECT_TRUE(is_checkpoint_position(7, 7, 100, 0, {7}));
    EXPECT_TRUE(admission_before(1, 5, 5, 0, 1, 1));   // priority first
    EXPECT_TRUE(admission_before(0, 1, 9, 0, 2, 1));   // then age
}

TEST(Sampling, ValidationNamesTheField) {
    EXPECT_TRUE(validate_sampling({}).ok());
    auto bad = [](SamplingParams p) { return validate_sampling(p); };
    EXPECT_NE(bad({.temperature = -1}).message().find("temperature"), std::string::npos);
    EXPECT_NE(bad({.temperature = NAN}).message().find("temperature"), std::string::npos);
    EXPECT_NE(bad({.top_k = -2}).message().find("top_k"), std::string::npos);
    EXPECT_NE(bad({.top_p = 0}).message().find("top_p"), std::string::npos);
    EXPECT_NE(bad({.top_p = 1.5f}).message().find("top_p"), std::string::npos);
    EXPECT_NE(bad({.min_p = 2}).message().find("min_p"), std::string::npos);
}

TEST(Sampling, GreedyFiltersAndSeeds) {
    std::vector<float> l = {0.f, 3.f, 2.9f, -1.f, 3.f};
    EXPECT_EQ(Sampler(SamplingParams{}).sample(l, 0), 1);  // first maximum
    Sampler k1({.temperature = 1.f, .top_k = 1, .seed = 3});
    for (int i = 0; i < 20; ++i) EXPECT_EQ(k1.sample(l, i), 1);  // top-1 is the best (lowest id on ties)
    Sampler mp({.temperature = 1.f, .min_p = 0.95f, .seed = 3});
    for (int i = 0; i < 50; ++i) {
        const int32_t t = mp.sample(l, i);
        EXPECT_TRUE(t == 1 || t == 4) << t;
    }
    Sampler a({.temperature = 0.8f, .top_p = 0.9f, .seed = 42}), b({.temperature = 0.8f, .top_p = 0.9f, .seed = 42});
    for (int i = 0; i < 50; ++i) EXPECT_EQ(a.sample(l, i), b.sample(l, i));
    std::vector<int> counts(5, 0);
    Sampler c({.temperature = 1.f, .seed = 1});
    for (int i = 0; i < 4000; ++i) ++counts[c.sample(l, i)];
    EXPECT_GT(counts[2], 500);  // e^2.9 / (2 e^3 + e^2.9 + ...) ≈ 0.3
    EXPECT_LT(counts[3], 40);
    EXPECT_NE(child_seed(5, 1), child_seed(5, 2));
    EXPECT_EQ(child_seed(5, 0), 5u);
    // Stateless: a draw depends on (seed, position) only, so a later position can be sampled first.
    Sampler d({.temperature = 1.f, .seed = 1});
    for (int i = 3999; i >= 0; --i) --counts[d.sample(l, i)];
    for (int n : counts) EXPECT_EQ(n, 0);
}

// Random123's tests/kat_vectors, the three "philox4x32 10" lines: counter (4 words), key (2 words), result.
TEST(Sampling, Philox4x32KnownAnswers) {
    struct Kat {
        uint32_t ctr[4], key[2], want[4];
    };
    const Kat kats[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (const Kat& k : kats) {
        const Philox4x32Out r = philox4x32_10(k.ctr, k.key);
        for (int j = 0; j < 4; ++j) EXPECT_EQ(r.v[j], k.want[j]) << j;
    }
    // The uniform takes the top 53 bits of words 0 and 1.
    EXPECT_EQ(philox_uniform(0, 0), double((uint64_t(0x6627e8d5) << 32 | 0xe169c58d) >> 11) * 0x1.0p-53);
}


// det_exp (the sampler's exponential, the same bits on the host and the device) against libm: within a
// few ulp over the range the sampler uses (x <= 0), exact at 0, and the edges.
TEST(DetExp, CloseToLibmAndExactEdges) {
    EXPECT_EQ(det_exp(0.0), 1.0);
    EXPECT_EQ(det_exp(-800.0), 0.0);
    EXPECT_EQ(det_exp(710.0), std::numeric_limits<double>::infinity());
    EXPECT_TRUE(std::isnan(det_exp(std::nan(""))));
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<double> wide(-700.0, 0.0), narrow(-40.0, 0.0);
    double worst = 0;
    for (int i = 0; i < 200000; ++i) {
        const double x = i % 2 ? wide(rng) : narrow(rng);
        const double want = std::exp(x), got = det_exp(x);
        worst = std::max(worst, std::fabs(got - want) / want);
    }
    for (int i = 0; i <= 4000; ++i) {  // around multiples of ln2/2, where the reduction switches k
        const double x = -i * 0.34657359027997264 + (i % 3 - 1) * 1e-12;
        if (x < -700) break;
        worst = std::max(worst, std::fabs(det_exp(x) - std::exp(x)) / std::exp(x));
    }
    EXPECT_LT(worst, 4 * std::numeric_limits<double>::epsilon()) << "relative error " << worst;
    // Subnormal results still come out close (rounded once, by ldexp).
    EXPECT_NEAR(det_exp(-740.0) / std::exp(-740.0), 1.0, 1e-3);
}

}  // namespace
}  // namespace dg::sched
