// The device sampler (engine/cuda/sampling.cu, through Backend::sample) against the host sampler (the
// oracle: the CPU backend's Backend::sample = Sampler::sample + compute_logprobs) on random logits: the
// same token for every (temperature, top_k, top_p, min_p, penalties, seed, position) row, logprobs within
// rounding, top-n logprobs with the same ids in the same order. Vocab sizes around and off the block size
// (256), rows full of ties, and rows that share one logit row (a fork's children).
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "engine/backend.h"
#include "engine/sampling.h"

namespace dg {
namespace {

#define SKIP_WITHOUT_CUDA() \
    if (!cuda_available()) GTEST_SKIP() << "no CUDA backend here (no device, and not the emulation build)"

// Logits of `rows` rows. Row kinds cycle: smooth normal, coarse grid (many ties), all equal, few peaks
// with signed zeros.
std::vector<float> random_logits(std::mt19937& rng, int32_t rows, int64_t V) {
    std::normal_distribution<float> nd(0.f, 3.f);
    std::vector<float> l(size_t(rows) * V);
    for (int32_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < V; ++i) {
            float& x = l[size_t(r) * V + i];
            switch (r % 4) {
                case 0: x = nd(rng); break;
                case 1: x = std::round(nd(rng)) * 0.5f; break;  // ties everywhere
                case 2: x = 1.25f; break;                      // one tie of the whole row
                default: x = (rng() % 17 == 0) ? 4.f + float(rng() % 3) : ((rng() & 1) ? 0.f : -0.f); break;
            }
        }
    return l;
}

struct Backends {
    std::unique_ptr<Backend> cpu, gpu;
};
Backends make() {
    Backends b;
    auto c = make_backend(BackendKind::kCpuExact);
    auto g = make_backend(BackendKind::kCuda);
    EXPECT_TRUE(c.ok() && g.ok());
    if (c.ok()) b.cpu = std::move(*c);
    if (g.ok()) b.gpu = std::move(*g);
    return b;
}

// Samples `rows` from `logits` on both backends and compares.
void compare(Backends& be, const std::vector<float>& logits, int32_t n_logit_rows, int64_t V,
             const std::vector<SampleRow>& rows, int* non_greedy_draws = nullptr) {
    std::vector<SampledToken> want, got;
    for (Backend* b : {be.cpu.get(), be.gpu.get()}) {
        auto buf = b->alloc_f32(int64_t(logits.size()));
        ASSERT_TRUE(buf.ok()) << buf.status();
        b->from_host(logits.data(), *buf, int64_t(logits.size()));
        const absl::Status st = b->sample(*buf, n_logit_rows, V, rows, b == be.cpu.get() ? &want : &got);
        b->free(*buf);
        ASSERT_TRUE(st.ok()) << b->name() << ": " << st;
        ASSERT_TRUE(b->take_error().ok());
    }
    ASSERT_EQ(want.size(), rows.size());
    ASSERT_EQ(got.size(), rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
        const SampleRow& r = rows[i];
        const SamplingParams& p = r.params;
        SCOPED_TRACE(::testing::Message() << "V " << V << " row " << i << " (logit row " << r.logit_row << ", T "
                                          << p.temperature << ", top_k " << p.top_k << ", top_p " << p.top_p
                                          << ", min_p " << p.min_p << ", rep " << p.repetition_penalty << ", pres "
                                          << p.presence_penalty << ", freq " << p.frequency_penalty << ", seed "
                                          << p.seed << ", position " << r.position << ")");
        EXPECT_EQ(got[i].token, want[i].token);
        if (non_greedy_draws && p.temperature > 0.f) {
            const float* row = logits.data() + size_t(r.logit_row) * V;
            int64_t arg = 0;
            for (int64_t j = 1; j < V; ++j)
                if (row[j] > row[arg]) arg = j;
            if (got[i].token != arg) ++*non_greedy_draws;
        }
        if (r.logprob || r.top_logprobs > 0) {
            EXPECT_NEAR(got[i].lp.logprob, want[i].lp.logprob, 1e-5f * std::max(1.f, std::fabs(want[i].lp.logprob)));
            ASSERT_EQ(got[i].lp.top.size(), want[i].lp.top.size());
            for (size_t j = 0; j < want[i].lp.top.size(); ++j) {
                EXPECT_EQ(got[i].lp.top[j].first, want[i].lp.top[j].first) << "top " << j;
                EXPECT_NEAR(got[i].lp.top[j].second, want[i].lp.top[j].second,
                            1e-5f * std::max(1.f, std::fabs(want[i].lp.top[j].second)));
            }
        } else {
            EXPECT_TRUE(got[i].lp.top.empty());
        }
    }
}

// A history for the penalties: repeats, some out-of-vocabulary ids (ignored), a prompt part.
std::vector<int32_t> history(std::mt19937& rng, int64_t V, int32_t n) {
    std::vector<int32_t> t;
    for (int32_t i = 0; i < n; ++i) {
        const uint32_t k = rng() % 20;
        t.push_back(k == 0 ? -3 : k == 1 ? int32_t(V + 5) : k < 8 ? int32_t(rng() % std::min<int64_t>(V, 6))
                                                                  : int32_t(rng() % V));
    }
    return t;
}

TEST(DeviceSampling, MatchesHostSamplerOnRandomRows) {
    SKIP_WITHOUT_CUDA();
    Backends be = make();
    ASSERT_TRUE(be.cpu && be.gpu);
    std::mt19937 rng(2026);
    const float temps[] = {0.f, 0.3f, 0.7f, 1.f, 1.5f};
    const float top_ps[] = {1.f, 0.95f, 0.5f, 0.05f};
    const float min_ps[] = {0.f, 0.f, 0.05f, 0.3f};
    struct Pen { float rep, pres, freq; };
    const Pen pens[] = {{1.f, 0.f, 0.f}, {1.3f, 0.f, 0.f}, {1.f, 0.5f, 0.3f}, {0.8f, -1.f, 1.5f}, {1.1f, 2.f, 0.f}};
    int non_greedy = 0, rows_total = 0;
    for (int64_t V : {1, 2, 7, 255, 256, 257, 1000, 3001}) {
        const int32_t n_logit = 4;
        const std::vector<float> logits = random_logits(rng, n_logit, V);
        std::vector<std::vector<int32_t>> hist;  // kept alive for the rows' spans
        std::vector<SampleRow> rows;
        const int32_t n_rows = V < 100 ? 40 : 90;
        hist.reserve(n_rows);
        for (int32_t i = 0; i < n_rows; ++i) {
            SampleRow r;
            r.logit_row = int32_t(rng() % n_logit);
            SamplingParams& p = r.params;
            p.temperature = temps[rng() % 5];
            const uint32_t k = rng() % 6;
            p.top_k = k == 0 ? 0 : k == 1 ? 1 : k == 2 ? 5 : k == 3 ? 50 : k == 4 ? int32_t(V - 1) : int32_t(V + 3);
            if (p.top_k < 0) p.top_k = 0;
            p.top_p = top_ps[rng() % 4];
            p.min_p = min_ps[rng() % 4];
            const Pen& pe = pens[rng() % 5];
            p.repetition_penalty = pe.rep, p.presence_penalty = pe.pres, p.frequency_penalty = pe.freq;
            p.seed = (uint64_t(rng()) << 32) | rng();
            r.position = int64_t(rng() % 5000);
            hist.push_back(history(rng, V, int32_t(rng() % 40)));
            r.tokens = hist.back();
            r.prompt_len = int32_t(rng() % 50) - 5;  // also negative and past the end (clamped)
            const uint32_t lp = rng() % 3;
            r.logprob = lp != 0;
            r.top_logprobs = lp == 2 ? int32_t(rng() % (kMaxTopLogprobs + 1)) : 0;
            rows.push_back(r);
        }
        compare(be, logits, n_logit, V, rows, &non_greedy);
        rows_total += n_rows;
    }
    // The comparison means something only if the draws were not all the argmax.
    EXPECT_GT(non_greedy, rows_total / 10) << "too few sampled tokens differ from the argmax";
}

// Infinite logits: -inf tokens (never drawn) and a row whose top is +inf (no token has a finite share:
// both samplers draw the first +inf token, as greedy does).
TEST(DeviceSampling, InfiniteLogits) {
    SKIP_WITHOUT_CUDA();
    Backends be = make();
    ASSERT_TRUE(be.cpu && be.gpu);
    std::mt19937 rng(11);
    const int64_t V = 300;
    std::vector<float> logits(2 * V);
    std::normal_distribution<float> nd(0.f, 2.f);
    for (float& x : logits) x = nd(rng);
    for (int64_t i = 0; i < V; i += 3) logits[size_t(i)] = -INFINITY;
    logits[size_t(V + 17)] = logits[size_t(V + 200)] = INFINITY;
    std::vector<SampleRow> rows;
    for (int32_t i = 0; i < 96; ++i) {
        SampleRow r;
        r.logit_row = i % 2;
        r.params.temperature = i % 3 == 0 ? 0.f : i % 3 == 1 ? 0.7f : 1.f;
        r.params.top_k = (i / 3) % 2 ? 5 : 0;
        r.params.top_p = (i / 6) % 2 ? 0.5f : 1.f;
        r.params.min_p = (i / 12) % 2 ? 0.2f : 0.f;
        r.params.seed = uint64_t(i);
        r.position = i;
        rows.push_back(r);
    }
    compare(be, logits, 2, V, rows);
    std::vector<SampledToken> got;
    auto buf = be.gpu->alloc_f32(int64_t(logits.size()));
    ASSERT_TRUE(buf.ok());
    be.gpu->from_host(logits.data(), *buf, int64_t(logits.size()));
    ASSERT_TRUE(be.gpu->sample(*buf, 2, V, rows, &got).ok());
    be.gpu->free(*buf);
    for (size_t i = 0; i < rows.size(); ++i) {
        if (rows[i].logit_row == 1) {
            EXPECT_EQ(got[i].token, 17) << "row " << i;
        } else {
            EXPECT_NE(got[i].token % 3, 0) << "row " << i << " drew a -inf token";
        }
    }
}

// The OpenAI default (temperature 1, nothing else) over many seeds and positions: every token equal,
// and a fork's children reading one logit row.
TEST(DeviceSampling, SeedsAndPositionsOnOneRow) {
    SKIP_WITHOUT_CUDA();
    Backends be = make();
    ASSERT_TRUE(be.cpu && be.gpu);
    std::mt19937 rng(7);
    const int64_t V = 517;
    std::vector<float> logits(V);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (float& x : logits) x = nd(rng);
    std::vector<SampleRow> rows;
    for (int32_t i = 0; i < 64; ++i) {
        SampleRow r;
        r.params.temperature = 1.f;
        r.params.seed = child_seed(99, i % 8);
        r.position = i / 8;
        rows.push_back(r);
    }
    int non_greedy = 0;
    compare(be, logits, 1, V, rows, &non_greedy);
    EXPECT_GT(non_greedy, 32);
}

// A real vocabulary's size (Qwen3.5: 248,320): several sort passes and a long sequential scan.
TEST(DeviceSampling, LargeVocabulary) {
    SKIP_WITHOUT_CUDA();
    Backends be = make();
    ASSERT_TRUE(be.cpu && be.gpu);
    std::mt19937 rng(3);
    const int64_t V = 248320;
    const std::vector<float> logits = random_logits(rng, 2, V);
    std::vector<int32_t> h = history(rng, V, 30);
    std::vector<SampleRow> rows(4);
    rows[0].params = {.temperature = 0.f, .repetition_penalty = 1.2f};
    rows[1].params = {.temperature = 1.f, .seed = 5};
    rows[2].params = {.temperature = 0.8f, .top_k = 40, .top_p = 0.9f, .seed = 6, .frequency_penalty = 0.5f};
    rows[3].params = {.temperature = 1.2f, .top_p = 0.7f, .min_p = 0.01f, .seed = 8};
    for (int i = 0; i < 4; ++i) {
        rows[i].logit_row = i % 2;
        rows[i].position = 17 + i;
        rows[i].tokens = h;
        rows[i].prompt_len = 10;
        rows[i].logprob = true;
        rows[i].top_logprobs = 5 * i;
    }
    compare(be, logits, 2, V, rows);
}

TEST(DeviceSampling, BadRowsAreRefusedOnBothBackends) {
    SKIP_WITHOUT_CUDA();
    Backends be = make();
    ASSERT_TRUE(be.cpu && be.gpu);
    for (Backend* b : {be.cpu.get(), be.gpu.get()}) {
        auto buf = b->alloc_f32(20);
        ASSERT_TRUE(buf.ok());
        std::vector<SampledToken> out;
        std::vector<SampleRow> rows(1);
        rows[0].logit_row = 2;  // 2 rows of 10
        EXPECT_EQ(b->sample(*buf, 2, 10, rows, &out).code(), absl::StatusCode::kInvalidArgument) << b->name();
        rows[0].logit_row = 1;
        rows[0].top_logprobs = kMaxTopLogprobs + 1;
        EXPECT_EQ(b->sample(*buf, 2, 10, rows, &out).code(), absl::StatusCode::kInvalidArgument) << b->name();
        rows[0].top_logprobs = 0;
        rows[0].params.top_p = 0.f;
        EXPECT_EQ(b->sample(*buf, 2, 10, rows, &out).code(), absl::StatusCode::kInvalidArgument) << b->name();
        EXPECT_TRUE(b->take_error().ok());
        b->free(*buf);
    }
}

}  // namespace
}  // namespace dg
