#include "services/front/request_builder.h"

#include <gtest/gtest.h>

namespace dg::front {
namespace {

ModelFacts tiny() {
    ModelFacts m;
    m.name = "tiny";
    m.vocab_size = 1024;
    m.max_context = 100;
    return m;
}

v1::Prompt ids_prompt(std::vector<int32_t> ids) {
    v1::Prompt p;
    for (int32_t i : ids) p.mutable_token_ids()->add_ids(i);
    return p;
}

TEST(BuildPrompt, TokenIds) {
    auto p = build_prompt(ids_prompt({1, 2, 3}), nullptr, tiny(), {});
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->ids, (std::vector<int32_t>{1, 2, 3}));
    EXPECT_FALSE(p->chat);
}

TEST(BuildPrompt, RejectsBadIdsNamingThem) {
    auto p = build_prompt(ids_prompt({1, 5000}), nullptr, tiny(), {});
    ASSERT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(p.status().message().find("prompt.token_ids.ids[1] = 5000"), std::string::npos) << p.status();
    EXPECT_EQ(build_prompt(ids_prompt({-1}), nullptr, tiny(), {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BuildPrompt, EmptyAndTooLong) {
    auto e = build_prompt(v1::Prompt(), nullptr, tiny(), {});
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(e.status().message().find("empty"), std::string::npos);
    FrontLimits lim;
    lim.max_prompt_tokens = 4;
    auto l = build_prompt(ids_prompt({1, 2, 3, 4, 5}), nullptr, tiny(), lim);
    ASSERT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(l.status().message().find("--max-prompt-tokens"), std::string::npos) << l.status();
    // The model's context bounds it too.
    auto c = build_prompt(ids_prompt(std::vector<int32_t>(100, 1)), nullptr, tiny(), {});
    EXPECT_NE(c.status().message().find("context"), std::string::npos) << c.status();
}

TEST(BuildPrompt, TextNeedsATokenizer) {
    v1::Prompt p;
    p.set_text("hello");
    auto r = build_prompt(p, nullptr, tiny(), {});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(r.status().message().find("token_ids"), std::string::npos);
}

TEST(BuildPrompt, SuffixIdsAppend) {
    std::vector<int32_t> suffix = {7, 8};
    auto p = build_prompt(ids_prompt({1, 2}), nullptr, tiny(), {}, nullptr, &suffix);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->ids, (std::vector<int32_t>{1, 2, 7, 8}));
}

TEST(Validate, Sampling) {
    v1::SamplingParams s;
    EXPECT_TRUE(validate_sampling(s).ok());
    s.set_temperature(-1);
    EXPECT_EQ(validate_sampling(s).code(), absl::StatusCode::kInvalidArgument);
    s = {};
    s.set_top_p(1.5f);
    EXPECT_NE(validate_sampling(s).message().find("top_p"), std::string::npos);
    s = {};
    s.set_min_p(1.0f);
    EXPECT_FALSE(validate_sampling(s).ok());
    s = {};
    s.set_presence_penalty(3);
    EXPECT_FALSE(validate_sampling(s).ok());
    s = {};
    s.set_temperature(std::numeric_limits<float>::quiet_NaN());
    EXPECT_FALSE(validate_sampling(s).ok());
}

TEST(Validate, StopsAndMaxTokens) {
    FrontLimits lim;
    lim.max_tokens = 50;
    v1::StopCriteria s;
    s.set_max_tokens(51);
    auto st = validate_stop(s, tiny(), lim);
    EXPECT_NE(st.message().find("--max-tokens"), std::string::npos) << st;
    s.set_max_tokens(10);
    s.add_stop("");
    EXPECT_FALSE(validate_stop(s, tiny(), lim).ok());
    s.clear_stop();
    s.add_stop_token_ids(4096);
    EXPECT_FALSE(validate_stop(s, tiny(), lim).ok());
    s.clear_stop_token_ids();
    EXPECT_TRUE(validate_stop(s, tiny(), lim).ok());

    // Default max_tokens: the limit, clipped by the context.
    v1::StopCriteria none;
    EXPECT_EQ(*resolve_max_tokens(none, 10, tiny(), lim), 50);
    EXPECT_EQ(*resolve_max_tokens(none, 80, tiny(), lim), 20);
    s.set_max_tokens(30);
    auto over = resolve_max_tokens(s, 80, tiny(), lim);
    EXPECT_NE(over.status().message().find("at most 20"), std::string::npos) << over.status();
}

TEST(Validate, ModelNameAndLogprobs) {
    EXPECT_TRUE(validate_model_name("", tiny()).ok());
    EXPECT_TRUE(validate_model_name("tiny", tiny()).ok());
    EXPECT_EQ(validate_model_name("gpt-4", tiny()).code(), absl::StatusCode::kNotFound);
    v1::LogprobOptions l;
    l.set_top_logprobs(21);
    EXPECT_FALSE(validate_logprobs(l, {}).ok());
}

TEST(WorkerSampling, SeedDefaultsToRandomOne) {
    v1::SamplingParams s;
    s.set_temperature(0.7f);
    worker::v1::SamplingParams w;
    to_worker_sampling(s, 1234, &w);
    EXPECT_EQ(w.seed(), 1234u);
    s.set_seed(5);
    to_worker_sampling(s, 1234, &w);
    EXPECT_EQ(w.seed(), 5u);
    EXPECT_FLOAT_EQ(w.temperature(), 0.7f);
}

}  // namespace
}  // namespace dg::front
