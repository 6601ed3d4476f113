// Workloads are a function of the seed: the same requests on every run (two servers get identical work),
// exact prompt lengths, ids inside the vocabulary's ordinary range, and agent turns that extend the
// previous turn's prompt token for token.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "services/bench/workload.h"

namespace dg::bench {
namespace {

TEST(BenchWorkload, SweepIsDeterministicAndExact) {
    const TokenRange r = token_range(1024);
    SweepSpec s{{32, 100}, {1, 4}, {8}, 0};
    const auto a = make_sweep(s, 7, r), b = make_sweep(s, 7, r), c = make_sweep(s, 8, r);
    ASSERT_EQ(a.size(), 4u);
    for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(a[i].jobs.size(), size_t(2 * a[i].concurrency));
        for (size_t j = 0; j < a[i].jobs.size(); ++j) {
            EXPECT_EQ(a[i].jobs[j].prompt, b[i].jobs[j].prompt);
            EXPECT_NE(a[i].jobs[j].prompt, c[i].jobs[j].prompt);
            EXPECT_EQ(int(a[i].jobs[j].prompt.size()), a[i].context);
            for (int32_t id : a[i].jobs[j].prompt) EXPECT_TRUE(id >= r.lo && id < r.hi) << id;
        }
        EXPECT_NE(a[i].jobs[0].prompt, a[i].jobs[1].prompt);  // no accidental prefix sharing
    }
}

TEST(BenchWorkload, TokenRangeAvoidsLowAndSpecialIds) {
    const TokenRange q = token_range(248320);
    EXPECT_EQ(q.lo, 1000);
    EXPECT_EQ(q.hi, 150000);
    const TokenRange t = token_range(1024);
    EXPECT_EQ(t.lo, 128);
    EXPECT_EQ(t.hi, 1024);
}

TEST(BenchWorkload, AgentTurnsExtendThePreviousPrompt) {
    AgentSpec s;
    s.sessions = 3;
    s.turns = 5;
    s.system_tokens = 50;
    s.user_tokens = 10;
    s.tool_min = 4;
    s.tool_max = 20;
    s.output = 6;
    s.cache = {true, false};
    const auto cells = make_agent(s, 1, token_range(1024));
    ASSERT_EQ(cells.size(), 10u);  // 5 turns × cache on/off
    for (int si = 0; si < 3; ++si) {
        for (int t = 1; t < 5; ++t) {
            const auto& prev = cells[size_t(t - 1)].jobs[size_t(si)].prompt;
            const auto& cur = cells[size_t(t)].jobs[size_t(si)].prompt;
            ASSERT_GE(cur.size(), prev.size() + 6 + 4);
            ASSERT_LE(cur.size(), prev.size() + 6 + 20);
            EXPECT_TRUE(std::equal(prev.begin(), prev.end(), cur.begin()));
        }
        EXPECT_EQ(cells[0].jobs[size_t(si)].prompt.size(), 60u);
        // The cache-off run sends the very same prompts.
        EXPECT_EQ(cells[4].jobs[size_t(si)].prompt, cells[9].jobs[size_t(si)].prompt);
        EXPECT_FALSE(cells[9].cache);
    }
    // One agent's system prompt: shared by every session; the user messages differ.
    const auto& a = cells[0].jobs[0].prompt;
    const auto& b = cells[0].jobs[1].prompt;
    EXPECT_TRUE(std::equal(a.begin(), a.begin() + 50, b.begin()));
    EXPECT_FALSE(std::equal(a.begin() + 50, a.end(), b.begin() + 50));
}

TEST(BenchWorkload, FanoutAndPoissonReplay) {
    FanoutSpec f{{64}, {2, 5}, 8, 4, 3};
    const auto fc = make_fanout(f, 1, token_range(1024));
    ASSERT_EQ(fc.size(), 2u);
    EXPECT_EQ(fc[1].jobs.size(), 3u);
    EXPECT_EQ(fc[1].jobs[0].suffixes.size(), 5u);
    EXPECT_EQ(fc[1].jobs[0].prompt.size(), 64u);
    EXPECT_EQ(fc[1].jobs[0].suffixes[4].size(), 8u);

    ReplaySpec r;
    r.rates = {10};
    r.requests = 2000;
    r.context = 4;
    auto rc = make_replay(r, 3, token_range(1024));
    ASSERT_TRUE(rc.ok());
    const auto& jobs = (*rc)[0].jobs;
    for (size_t i = 1; i < jobs.size(); ++i) EXPECT_GE(jobs[i].arrival_s, jobs[i - 1].arrival_s);
    // 1999 exponential gaps of mean 0.1 s: the last arrival is near 199.9 s (sd ~4.5 s).
    EXPECT_NEAR(jobs.back().arrival_s, 199.9, 25);
}

TEST(BenchWorkload, ReplayTraceAndItsErrors) {
    const std::string path = std::string(DG_BINARY_DIR) + "/bench_trace_test.jsonl";
    {
        std::ofstream f(path);
        f << "# a comment\n{\"arrival_s\": 0.5, \"prompt_tokens\": 12, \"output_tokens\": 3}\n\n"
          << "{\"arrival_s\": 0.1, \"prompt_ids\": [5, 6, 7], \"output_tokens\": 2}\n";
    }
    ReplaySpec r;
    r.trace = path;
    auto c = make_replay(r, 1, token_range(1024));
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_EQ((*c)[0].jobs.size(), 2u);
    EXPECT_EQ((*c)[0].jobs[0].prompt, (std::vector<int32_t>{5, 6, 7}));  // sorted by arrival
    EXPECT_EQ((*c)[0].jobs[1].prompt.size(), 12u);
    {
        std::ofstream f(path);
        f << "{\"arrival_s\": 0.5, \"output_tokens\": 3}\n";
    }
    auto bad = make_replay(r, 1, token_range(1024));
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(std::string(bad.status().message()).find(":1: needs \"prompt_tokens\""), std::string::npos)
        << bad.status();
    std::remove(path.c_str());
}

}  // namespace
}  // namespace dg::bench
