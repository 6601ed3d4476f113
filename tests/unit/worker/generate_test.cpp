// Generate over a real gRPC stub: exactness against cold Runner generation, multi-turn resume, fork,
// logprobs and penalties.
#include <cmath>

#include "tests/unit/worker/worker_test_util.h"

namespace dg::worker::testing {
namespace {

TEST(Generate, GreedyEqualsColdRun) {
    Worker w(test_options());
    const auto prompt = iota_prompt(37);
    Result r = w.generate(greedy(prompt, 12));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens[0], cold_greedy("dense", prompt, 12));
    EXPECT_EQ(r.done_events, 1);
    EXPECT_TRUE(r.events.back().done());
    EXPECT_EQ(r.events.back().finish_reason(), pb::FINISH_REASON_LENGTH);
    EXPECT_EQ(r.usage.prompt_tokens(), 37);
    EXPECT_EQ(r.usage.completion_tokens(), 12);
    w.expect_idle_and_sound();
}

TEST(Generate, MoeGreedyEqualsColdRun) {
    Worker w(test_options("moe"));
    const auto prompt = iota_prompt(21, 5);
    Result r = w.generate(greedy(prompt, 8));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens[0], cold_greedy("moe", prompt, 8));
}

TEST(Generate, MultiTurnResumeReportsCachedTokens) {
    Worker w(test_options());
    std::vector<int32_t> history = iota_prompt(40);
    Result t1 = w.generate(greedy(history, 6));
    ASSERT_TRUE(t1.status.ok());
    EXPECT_EQ(t1.usage.cached_tokens_device() + t1.usage.cached_tokens_host(), 0);
    // Turn 2 extends turn 1 (prompt + answer + a new user message).
    history.insert(history.end(), t1.tokens[0].begin(), t1.tokens[0].end());
    for (int32_t t : {9, 8, 7, 6, 5}) history.push_back(t);
    Result t2 = w.generate(greedy(history, 6));
    ASSERT_TRUE(t2.status.ok());
    const int32_t cached = t2.usage.cached_tokens_device() + t2.usage.cached_tokens_host();
    EXPECT_GE(cached, 40);
    EXPECT_EQ(t2.usage.prefill_tokens(), int32_t(history.size()) - cached);
    EXPECT_EQ(t2.tokens[0], cold_greedy("dense", history, 6));
    w.expect_idle_and_sound();
}

TEST(Generate, ForkTwoContinuations) {
    Worker w(test_options());
    const auto prompt = iota_prompt(29, 3);
    Result r = w.generate(greedy(prompt, 7, 2));
    ASSERT_TRUE(r.status.ok());
    const auto cold = cold_greedy("dense", prompt, 7);
    EXPECT_EQ(r.tokens[0], cold);
    EXPECT_EQ(r.tokens[1], cold);  // greedy: both children take the same path
    EXPECT_EQ(r.usage.completion_tokens(), 14);
    EXPECT_EQ(r.usage.prefill_tokens(), 29);  // one prefill for both
    EXPECT_EQ(r.done_events, 1);
    w.expect_idle_and_sound();
}

TEST(Generate, SeededSamplingIsReproducibleAndForksDiffer) {
    Worker w(test_options());
    pb::GenerateRequest req = greedy(iota_prompt(12), 16, 2);
    req.mutable_sampling()->set_temperature(1.5f);
    req.mutable_sampling()->set_seed(7);
    Result a = w.generate(req), b = w.generate(req);
    ASSERT_TRUE(a.status.ok() && b.status.ok());
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_NE(a.tokens[0], a.tokens[1]);
}

TEST(Generate, LogprobsAreLogSoftmaxOfTheChosenToken) {
    Worker w(test_options());
    pb::GenerateRequest req = greedy(iota_prompt(10), 5);
    req.set_top_logprobs(3);
    Result r = w.generate(req);
    ASSERT_TRUE(r.status.ok());
    int with_token = 0;
    for (const auto& e : r.events) {
        if (e.token_id() < 0) continue;
        ++with_token;
        ASSERT_EQ(e.top_logprobs_size(), 3);
        // Greedy: the chosen token is the best one.
        EXPECT_EQ(e.top_logprobs(0).token_id(), e.token_id());
        EXPECT_FLOAT_EQ(e.top_logprobs(0).logprob(), e.logprob());
        EXPECT_LE(e.logprob(), 0.f);
        EXPECT_GE(e.top_logprobs(0).logprob(), e.top_logprobs(1).logprob());
        EXPECT_GE(e.top_logprobs(1).logprob(), e.top_logprobs(2).logprob());
    }
    EXPECT_EQ(with_token, 5);

    // logprobs without top-n.
    req.set_top_logprobs(0);
    req.set_logprobs(true);
    Result s = w.generate(req);
    ASSERT_TRUE(s.status.ok());
    for (size_t i = 0; i < s.events.size(); ++i) {
        EXPECT_EQ(s.events[i].top_logprobs_size(), 0);
        EXPECT_FLOAT_EQ(s.events[i].logprob(), r.events[i].logprob());
    }
}

TEST(Generate, PenaltiesChangeGreedyOutputDeterministically) {
    Worker w(test_options());
    // A short prompt and long greedy output: a random tiny model falls into repetition, which a strong
    // frequency penalty must break.
    pb::GenerateRequest plain = greedy({1, 2, 3}, 40);
    Result base = w.generate(plain);
    ASSERT_TRUE(base.status.ok());
    pb::GenerateRequest pen = plain;
    pen.mutable_sampling()->set_frequency_penalty(2.f);
    pen.mutable_sampling()->set_repetition_penalty(1.5f);
    Result a = w.generate(pen), b = w.generate(pen);
    ASSERT_TRUE(a.status.ok() && b.status.ok());
    EXPECT_EQ(a.tokens, b.tokens);
    auto distinct = [](const std::vector<int32_t>& v) { return std::set<int32_t>(v.begin(), v.end()).size(); };
    EXPECT_GE(distinct(a.tokens[0]), distinct(base.tokens[0]));
    EXPECT_NE(a.tokens[0], base.tokens[0]);
}

}  // namespace
}  // namespace dg::worker::testing
