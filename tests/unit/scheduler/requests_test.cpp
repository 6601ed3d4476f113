// Bad input and request lifecycle: every rejection is a clear status naming the problem; cancellation
// and deadlines end a request at once and free everything; stop tokens; usage and digests.
#include <gtest/gtest.h>

#include "tests/unit/scheduler/sched_test_util.h"

namespace dg::sched {
namespace {

using testing::cold_greedy;
using testing::greedy_request;
using testing::Harness;
using testing::Outcome;
using testing::random_tokens;

SchedulerOptions small_context() {
    SchedulerOptions o;
    o.max_seq_len = 64;
    return o;
}

void expect_error(const absl::StatusOr<RequestId>& r, absl::StatusCode code, const std::string& words) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), code) << r.status();
    EXPECT_NE(r.status().message().find(words), std::string::npos) << r.status();
}

TEST(BadInput, ClearErrors) {
    CacheOptions cache;
    cache.block_tokens = 8;
    cache.n_blocks = 6;  // 48 tokens in all
    Harness h("dense", cache, small_context());
    std::mt19937 rng(1);
    expect_error(h.submit(greedy_request({}, 4)), absl::StatusCode::kInvalidArgument, "empty");
    expect_error(h.submit(greedy_request({1, 256, 3}, 4)), absl::StatusCode::kInvalidArgument, "token id 256 at position 1");
    expect_error(h.submit(greedy_request({-1}, 4)), absl::StatusCode::kInvalidArgument, "vocabulary");
    expect_error(h.submit(greedy_request(random_tokens(rng, 65), 4)), absl::StatusCode::kInvalidArgument,
                 "more than the context of 64");
    expect_error(h.submit(greedy_request(random_tokens(rng, 50), 4)), absl::StatusCode::kResourceExhausted,
                 "can never run");
    expect_error(h.submit(greedy_request({1, 2}, 0)), absl::StatusCode::kInvalidArgument, "max_tokens");
    Request r = greedy_request({1, 2}, 4);
    r.n = 0;
    expect_error(h.submit(r), absl::StatusCode::kInvalidArgument, "n must be");
    r = greedy_request({1, 2}, 4);
    r.sampling.top_p = 0;
    expect_error(h.submit(r), absl::StatusCode::kInvalidArgument, "top_p");
    r = greedy_request({1, 2}, 4);
    r.sampling.temperature = -0.5f;
    expect_error(h.submit(r), absl::StatusCode::kInvalidArgument, "temperature");
    r = greedy_request({1, 2}, 4);
    r.checkpoint_at = {3};
    expect_error(h.submit(r), absl::StatusCode::kInvalidArgument, "checkpoint hint 3");
    r = greedy_request({1, 2}, 4);
    r.stop_tokens = {999};
    expect_error(h.submit(r), absl::StatusCode::kInvalidArgument, "stop token");
    EXPECT_EQ(h.loop->cancel(12345).code(), absl::StatusCode::kNotFound);
    EXPECT_TRUE(h.loop->idle());
    EXPECT_TRUE(h.loop->check_invariants().ok());
}

TEST(BadInput, BadEngineOptions) {
    auto w = load_model(testing::fixture_path("dense"));
    ASSERT_TRUE(w.ok());
    SchedulerOptions o;
    o.token_budget = 0;
    auto l = EngineLoop::create(std::move(*w), BackendKind::kCpuExact, {}, o);
    EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
}

// Generation stops at the context limit with "length", never past it.
TEST(Lifecycle, ContextLimitEndsWithLength) {
    Harness h("dense", {}, small_context());
    std::mt19937 rng(2);
    auto o = h.run_greedy(random_tokens(rng, 60), 50);
    EXPECT_EQ(o.finish.at(0), FinishReason::kLength);
    EXPECT_EQ(o.tokens.at(0).size(), 5u);  // 60 + 5 tokens; the last is never fed: 64 positions
}

TEST(Lifecycle, CancelFreesEverythingAtOnce) {
    SchedulerOptions opt;
    opt.spare_slots = 0;
    opt.host_cache_bytes = 0;  // no checkpoints at all: an idle worker then holds nothing
    Harness h("dense", {}, opt);
    std::mt19937 rng(3);
    RequestId a = *h.submit(greedy_request(random_tokens(rng, 30), 50));
    Request rb = greedy_request(random_tokens(rng, 20), 50);
    rb.n = 3;
    RequestId b = *h.submit(rb);
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(h.loop->step().ok());
    ASSERT_TRUE(h.loop->cancel(a).ok());
    ASSERT_TRUE(h.loop->cancel(b).ok());
    EXPECT_TRUE(h.loop->idle());
    ASSERT_TRUE(h.loop->check_invariants().ok()) << h.loop->check_invariants();
    const LoadDigest d = h.loop->digest();
    EXPECT_EQ(d.kv_blocks_referenced, 0);
    EXPECT_EQ(d.seq_slots_used, 0);
    EXPECT_EQ(h.outcomes[a].finish.at(0), FinishReason::kCancelled);
    EXPECT_EQ(h.outcomes[a].status.code(), absl::StatusCode::kCancelled);
    EXPECT_EQ(h.outcomes[b].finish.size(), 3u);
    EXPECT_EQ(h.outcomes[b].done_events, 1);
    EXPECT_EQ(h.loop->cancel(a).code(), absl::StatusCode::kNotFound);
}

// A front whose stop string ended one continuation frees it alone; its siblings run to their limit,
// producing exactly what they would have without the cancel.
TEST(Lifecycle, CancelOneContinuation) {
    SchedulerOptions opt;
    opt.host_cache_bytes = 0;
    Harness h("dense", {}, opt);
    std::mt19937 rng(5);
    const auto p = random_tokens(rng, 20);
    const Outcome whole = h.run_greedy(p, 12, 3);
    Request r = greedy_request(p, 12);
    r.n = 3;
    RequestId id = *h.submit(r);
    EXPECT_EQ(h.loop->cancel_continuation(id, 1).code(), absl::StatusCode::kFailedPrecondition);  // not forked
    EXPECT_EQ(h.loop->cancel_continuation(id, 3).code(), absl::StatusCode::kInvalidArgument);
    while (h.outcomes[id].tokens[1].size() < 2) ASSERT_TRUE(h.loop->step().ok());
    ASSERT_TRUE(h.loop->cancel_continuation(id, 1).ok());
    EXPECT_EQ(h.loop->cancel_continuation(id, 1).code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(h.outcomes[id].finish.at(1), FinishReason::kCancelled);
    EXPECT_EQ(h.outcomes[id].done_events, 0);
    ASSERT_TRUE(h.loop->check_invariants().ok()) << h.loop->check_invariants();
    ASSERT_TRUE(h.loop->run_until_idle().ok());
    const Outcome& o = h.outcomes[id];
    EXPECT_EQ(o.done_events, 1);
    EXPECT_EQ(o.tokens.at(0), whole.tokens.at(0));
    EXPECT_EQ(o.tokens.at(2), whole.tokens.at(2));
    EXPECT_EQ(o.finish.at(0), FinishReason::kLength);
    EXPECT_LT(o.tokens.at(1).size(), 12u);
    EXPECT_LT(o.usage.completion_tokens, whole.usage.completion_tokens);
    EXPECT_TRUE(o.usage.admitted && o.usage.first_token);
    EXPECT_EQ(h.loop->digest().seq_slots_used, 0);
    EXPECT_EQ(h.loop->cancel_continuation(id, 0).code(), absl::StatusCode::kNotFound);
}

TEST(Lifecycle, DeadlineEndsTheRequest) {
    Harness h("dense", {}, {});
    Request r = greedy_request({1, 2, 3}, 100);
    r.deadline = Clock::now() - std::chrono::seconds(1);
    RequestId id = *h.submit(r);
    ASSERT_TRUE(h.loop->run_until_idle().ok());
    EXPECT_EQ(h.outcomes[id].finish.at(0), FinishReason::kDeadline);
    EXPECT_EQ(h.outcomes[id].status.code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_TRUE(h.loop->check_invariants().ok());
}

TEST(Lifecycle, StopTokenEndsWithStop) {
    Harness h("dense", {}, {});
    std::mt19937 rng(4);
    const auto p = random_tokens(rng, 12);
    const auto cold = cold_greedy("dense", p, 6, DType::F16);
    Request r = greedy_request(p, 20);
    r.stop_tokens = {cold[3]};
    RequestId id = *h.submit(r);
    ASSERT_TRUE(h.loop->run_until_idle().ok());
    const auto& toks = h.outcomes[id].tokens.at(0);
    EXPECT_EQ(h.outcomes[id].finish.at(0), FinishReason::kStop);
    ASSERT_LE(toks.size(), 4u);
    EXPECT_EQ(toks.back(), cold[3]);
}

// Higher priority is admitted first when only one sequence fits.
TEST(Lifecycle, PriorityThenAge) {
    SchedulerOptions opt;
    opt.max_running = 1;
    Harness h("dense", {}, opt);
    std::vector<RequestId> order;
    auto track = [&](int prio) {
        Request r = greedy_request({5, 6, 7}, 2);
        r.priority = prio;
        return *h.submit(r);
    };
    RequestId low = track(0), high = track(5), low2 = track(0);
    ASSERT_TRUE(h.loop->step().ok());
    const LoadDigest d = h.loop->digest();
    EXPECT_EQ(d.running, 1);
    EXPECT_EQ(d.waiting, 2);
    EXPECT_EQ(h.outcomes[high].tokens.size(), 1u);  // the high one ran first
    EXPECT_TRUE(h.outcomes[low].tokens.empty());
    ASSERT_TRUE(h.loop->run_until_idle().ok());
    EXPECT_EQ(h.outcomes[low2].done_events, 1);
}

// The digest lists checkpoints with the keys a front computes from the same token ids.
TEST(Lifecycle, DigestNamesCheckpointsByPrefixKey) {
    Harness h("dense", {}, {});
    std::mt19937 rng(5);
    const auto p = random_tokens(rng, 19);
    h.run_greedy(p, 3);
    PrefixHasher hasher(0, 16);
    hasher.push(p);
    bool found = false;
    for (const auto& e : h.loop->digest().checkpoints) found |= e.key == hasher.checkpoint_key() && e.pos == 19;
    EXPECT_TRUE(found);
}

}  // namespace
}  // namespace dg::sched
