// Helpers for the scheduler tests: the tiny golden fixtures, a cold reference (engine Runner, one
// sequence, whole prompt then greedy decode), and an EngineLoop that records its events.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "engine/runner.h"
#include "engine/weights.h"
#include "scheduler/engine_loop.h"

namespace dg::sched::testing {

inline std::string fixture_path(const std::string& name) {
    return std::string(DG_SOURCE_DIR) + "/tests/golden/fixtures/" + name + "/hf";
}

// Greedy tokens of a cold run: the prompt in one piece, then one token per step.
inline std::vector<int32_t> cold_greedy(const std::string& fixture, const std::vector<int32_t>& prompt,
                                        int32_t n_tokens, DType kv = DType::F32,
                                        BackendKind backend = BackendKind::kCpuExact) {
    RunnerOptions ro;
    ro.kv_type = kv;
    ro.max_seqs = 1;
    ro.max_tokens_per_seq = int64_t(prompt.size()) + n_tokens + 16;
    auto r = Runner::open(fixture_path(fixture), backend, ro);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    auto seq = (*r)->new_sequence();
    auto l = (*r)->feed(*seq, prompt, false);
    EXPECT_TRUE(l.ok()) << l.status();
    std::vector<int32_t> out;
    for (int32_t i = 0; i < n_tokens && l.ok(); ++i) {
        const int32_t t = int32_t(std::max_element(l->begin(), l->end()) - l->begin());
        out.push_back(t);
        if (i + 1 < n_tokens) l = (*r)->feed(*seq, std::vector<int32_t>{t}, false);
    }
    return out;
}

inline std::vector<int32_t> random_tokens(std::mt19937& rng, int32_t n, int32_t vocab = 255) {
    std::uniform_int_distribution<int32_t> d(0, vocab - 1);
    std::vector<int32_t> v(n);
    for (auto& t : v) t = d(rng);
    return v;
}

// What one request produced.
struct Outcome {
    std::map<int32_t, std::vector<int32_t>> tokens;        // per child
    std::map<int32_t, FinishReason> finish;                 // per child
    int32_t done_events = 0;
    Usage usage;
    absl::Status status;
};

// An EngineLoop over a fixture whose requests record into `outcomes`.
class Harness {
public:
    Harness(const std::string& fixture, CacheOptions cache, SchedulerOptions opt,
            BackendKind backend = BackendKind::kCpuExact)
        : fixture_(fixture) {
        auto w = load_model(fixture_path(fixture));
        EXPECT_TRUE(w.ok()) << w.status();
        auto l = EngineLoop::create(std::move(*w), backend, cache, opt);
        EXPECT_TRUE(l.ok()) << l.status();
        loop = std::move(*l);
    }

    absl::StatusOr<RequestId> submit(Request r) {
        auto slot = std::make_shared<RequestId>(0);
        r.on_event = [this, slot](const Event& e) {
            Outcome& o = outcomes[e.id];
            if (e.token >= 0) o.tokens[e.index].push_back(e.token);
            if (e.finish != FinishReason::kNone) o.finish[e.index] = e.finish;
            if (!e.status.ok()) o.status = e.status;
            if (e.request_done) {
                ++o.done_events;
                o.usage = e.usage;
            }
        };
        return loop->submit(std::move(r));
    }

    // Submits one greedy request (EOS ignored, exactly max_tokens tokens) and runs until idle.
    Outcome run_greedy(const std::vector<int32_t>& prompt, int32_t max_tokens, int32_t n = 1) {
        Request r;
        r.prompt = prompt;
        r.max_tokens = max_tokens;
        r.ignore_eos = true;
        r.n = n;
        auto id = submit(std::move(r));
        EXPECT_TRUE(id.ok()) << id.status();
        EXPECT_TRUE(loop->run_until_idle().ok());
        EXPECT_TRUE(loop->check_invariants().ok()) << loop->check_invariants();
        return id.ok() ? outcomes[*id] : Outcome{};
    }

    std::string fixture_;
    std::unique_ptr<EngineLoop> loop;
    std::map<RequestId, Outcome> outcomes;
};

inline Request greedy_request(const std::vector<int32_t>& prompt, int32_t max_tokens) {
    Request r;
    r.prompt = prompt;
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    return r;
}

}  // namespace dg::sched::testing
