#include "services/front/router.h"

#include <gtest/gtest.h>

#include "scheduler/prefix_hash.h"

namespace dg::front {
namespace {

// A worker's digest holding checkpoints of `prompt` at `positions`, keyed the way the scheduler keys them.
CheckpointDigest digest_of(const std::vector<int32_t>& prompt, std::vector<int32_t> positions, uint64_t salt = 0,
                           int32_t block = 16) {
    CheckpointDigest d;
    sched::PrefixHasher h(salt, block);
    for (size_t i = 0; i < prompt.size(); ++i) {
        h.push(prompt[i]);
        for (int32_t p : positions)
            if (p == h.pos()) d[h.checkpoint_key()] = p;
    }
    return d;
}

std::vector<int32_t> seq(int n, int start = 1) {
    std::vector<int32_t> v;
    for (int i = 0; i < n; ++i) v.push_back(start + i);
    return v;
}

TEST(PrefixMatch, FindsTheLongestCheckpointedPrefix) {
    const auto prompt = seq(100);
    const auto d = digest_of(prompt, {10, 37, 64});
    EXPECT_EQ(longest_cached_prefix(prompt, 0, 16, d), 64);
    // A prompt that diverges after 40 tokens only shares the checkpoint at 37.
    auto other = prompt;
    other[40] = 999;
    EXPECT_EQ(longest_cached_prefix(other, 0, 16, d), 37);
    // Shorter prompt: only checkpoints inside it.
    EXPECT_EQ(longest_cached_prefix(seq(50), 0, 16, d), 37);
}

TEST(PrefixMatch, SaltAndBlockSizeSeparateKeys) {
    const auto prompt = seq(100);
    const auto d = digest_of(prompt, {64}, /*salt=*/7);
    EXPECT_EQ(longest_cached_prefix(prompt, 7, 16, d), 64);
    EXPECT_EQ(longest_cached_prefix(prompt, 0, 16, d), 0);
    EXPECT_EQ(longest_cached_prefix(prompt, 7, 32, d), 0);  // keys depend on the worker's block size
}

TEST(PrefixMatch, ShortPromptsAndPartialBlocks) {
    const auto prompt = seq(5);
    const auto d = digest_of(prompt, {3, 5});
    EXPECT_EQ(longest_cached_prefix(prompt, 0, 16, d), 5);
}

WorkerView view(int id, int running, const CheckpointDigest* d = nullptr) {
    WorkerView v;
    v.id = id;
    v.healthy = true;
    v.running = running;
    if (d) v.digest = std::make_shared<const CheckpointDigest>(*d);
    return v;
}

TEST(Route, CachedPrefixBeatsLightLoad) {
    const auto prompt = seq(2000);
    const auto d = digest_of(prompt, {1900});
    std::vector<WorkerView> ws = {view(0, 0), view(1, 2, &d)};
    RouteChoice c = choose_worker(ws, prompt, 0, -1, {});
    EXPECT_EQ(c.id, 1);
    EXPECT_EQ(c.cached_tokens, 1900);
    EXPECT_STREQ(c.reason, "prefix");
}

TEST(Route, LoadWinsWhenTheCacheSavesLittle) {
    const auto prompt = seq(200);
    const auto d = digest_of(prompt, {20});
    std::vector<WorkerView> ws = {view(0, 0), view(1, 3, &d)};
    EXPECT_EQ(choose_worker(ws, prompt, 0, -1, {}).id, 0);
}

TEST(Route, LeastLoadedWithoutCacheAndDeterministicTies) {
    const auto prompt = seq(10);
    std::vector<WorkerView> ws = {view(0, 3), view(1, 1), view(2, 1)};
    RouteChoice c = choose_worker(ws, prompt, 0, -1, {});
    EXPECT_EQ(c.id, 1);
    EXPECT_STREQ(c.reason, "load");
    ws[1].inflight = 5;  // what this front sent but the worker has not reported yet counts too
    EXPECT_EQ(choose_worker(ws, prompt, 0, -1, {}).id, 2);
}

TEST(Route, SkipsUnhealthyDrainingAndExcluded) {
    const auto prompt = seq(10);
    std::vector<WorkerView> ws = {view(0, 0), view(1, 0), view(2, 9)};
    ws[0].healthy = false;
    ws[1].draining = true;
    EXPECT_EQ(choose_worker(ws, prompt, 0, -1, {}).id, 2);
    std::vector<int> exclude = {2};
    EXPECT_EQ(choose_worker(ws, prompt, 0, -1, exclude).id, -1);
}

TEST(Route, SessionSticksWhileHealthy) {
    const auto prompt = seq(10);
    std::vector<WorkerView> ws = {view(0, 0), view(1, 8)};
    RouteChoice c = choose_worker(ws, prompt, 0, /*sticky=*/1, {});
    EXPECT_EQ(c.id, 1);
    EXPECT_STREQ(c.reason, "session");
    ws[1].healthy = false;  // the session moves when its worker is down
    EXPECT_EQ(choose_worker(ws, prompt, 0, 1, {}).id, 0);
}

TEST(SessionTable, LruBounded) {
    SessionTable t(2);
    t.put("a", "w1");
    t.put("b", "w2");
    EXPECT_EQ(t.get("a"), "w1");  // a is now the most recent
    t.put("c", "w3");             // evicts b
    EXPECT_EQ(t.get("b"), "");
    EXPECT_EQ(t.get("a"), "w1");
    EXPECT_EQ(t.get("c"), "w3");
    EXPECT_EQ(t.size(), 2u);
}

TEST(Salt, StableAndEmptyIsShared) {
    EXPECT_EQ(salt_from_string(""), 0u);
    EXPECT_EQ(salt_from_string("tenant-a"), salt_from_string("tenant-a"));
    EXPECT_NE(salt_from_string("tenant-a"), salt_from_string("tenant-b"));
    EXPECT_NE(salt_from_string("x"), 0u);
}

}  // namespace
}  // namespace dg::front
