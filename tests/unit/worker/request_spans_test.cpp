// The worker's spans for one request: a SERVER span under the front's span, phase children inside it
// in order, and nothing past the request's end whatever the scheduler's rounding.
#include "services/worker/request_spans.h"

#include <gtest/gtest.h>

#include <map>

namespace dg::worker {
namespace {

constexpr uint64_t kMs = 1'000'000;

RequestTrace trace_under_front() {
    RequestTrace t;
    t.trace_id = trace::new_trace_id();
    t.parent = trace::new_span_id();
    t.start_ns = 1'700'000'000'000 * kMs;
    t.request_id = "r#0";
    t.public_request_id = "r";
    t.worker_id = "w0";
    t.n = 2;
    t.max_tokens = 8;
    return t;
}

std::map<std::string, trace::Span> by_name(const std::vector<trace::Span>& spans) {
    std::map<std::string, trace::Span> m;
    for (const auto& s : spans) m[s.name] = s;
    return m;
}

bool has_attr(const trace::Span& s, const std::string& key, const trace::AttrValue& v) {
    for (const auto& [k, val] : s.attributes)
        if (k == key && val == v) return true;
    return false;
}

TEST(RequestSpans, PhasesNestUnderTheServerSpanInOrder) {
    const RequestTrace t = trace_under_front();
    sched::Usage u;
    u.admitted = u.first_token = true;
    u.prompt_tokens = 40;
    u.cached_tokens_host = 32;
    u.prefill_tokens = 8;
    u.completion_tokens = 16;
    u.queue_ms = 5;
    u.restore_ms = 2;
    u.prefill_ms = 10;
    u.ttft_ms = 15;
    const uint64_t end = t.start_ns + 100 * kMs;
    const auto spans = request_spans(t, u, end, 0, "");
    ASSERT_EQ(spans.size(), 5u);
    auto m = by_name(spans);
    const trace::Span& server = m.at("deltagate.worker.v1.Worker/Generate");
    EXPECT_EQ(server.kind, trace::SpanKind::kServer);
    EXPECT_EQ(server.parent_span_id, t.parent);
    EXPECT_EQ(server.start_ns, t.start_ns);
    EXPECT_EQ(server.end_ns, end);
    EXPECT_EQ(server.status, trace::SpanStatus::kUnset);
    EXPECT_TRUE(has_attr(server, "gen_ai.usage.input_tokens", int64_t(40)));
    EXPECT_TRUE(has_attr(server, "gen_ai.usage.output_tokens", int64_t(16)));
    EXPECT_TRUE(has_attr(server, "deltagate.request_id", std::string("r")));
    for (const char* phase : {"queue", "cache_restore", "prefill", "decode"}) {
        const trace::Span& s = m.at(phase);
        EXPECT_EQ(s.trace_id, t.trace_id);
        EXPECT_EQ(s.parent_span_id, server.span_id) << phase;
        EXPECT_GE(s.start_ns, server.start_ns) << phase;
        EXPECT_LE(s.end_ns, server.end_ns) << phase;
        EXPECT_NE(s.span_id, server.span_id);
    }
    EXPECT_EQ(m.at("queue").end_ns, t.start_ns + 5 * kMs);
    EXPECT_EQ(m.at("cache_restore").start_ns, t.start_ns + 5 * kMs);
    EXPECT_EQ(m.at("cache_restore").end_ns, t.start_ns + 7 * kMs);
    EXPECT_TRUE(has_attr(m.at("cache_restore"), "deltagate.cache.tier", std::string("host")));
    EXPECT_EQ(m.at("prefill").start_ns, t.start_ns + 7 * kMs);
    EXPECT_EQ(m.at("prefill").end_ns, t.start_ns + 15 * kMs);
    EXPECT_EQ(m.at("decode").start_ns, t.start_ns + 15 * kMs);
    EXPECT_EQ(m.at("decode").end_ns, end);
}

TEST(RequestSpans, NoCacheNoRestoreSpan) {
    sched::Usage u;
    u.admitted = u.first_token = true;
    u.queue_ms = 1;
    u.ttft_ms = 3;
    auto m = by_name(request_spans(trace_under_front(), u, trace_under_front().start_ns + 10 * kMs, 0, ""));
    EXPECT_EQ(m.count("cache_restore"), 0u);
    EXPECT_EQ(m.at("prefill").start_ns, m.at("queue").end_ns);
}

TEST(RequestSpans, EndedInTheQueueIsAnErrorWithOnlyAQueueSpan) {
    const RequestTrace t = trace_under_front();
    sched::Usage u;  // never admitted
    const auto spans = request_spans(t, u, t.start_ns + 3 * kMs, 4, "the request passed its deadline");
    auto m = by_name(spans);
    ASSERT_EQ(spans.size(), 2u);
    EXPECT_EQ(m.at("deltagate.worker.v1.Worker/Generate").status, trace::SpanStatus::kError);
    EXPECT_EQ(m.at("deltagate.worker.v1.Worker/Generate").status_message, "the request passed its deadline");
    EXPECT_EQ(m.at("queue").end_ns, t.start_ns + 3 * kMs);
    EXPECT_TRUE(has_attr(m.at("queue"), "deltagate.ended_in_queue", true));
}

// The scheduler's clock starts a post after receipt: durations may overrun the wall-clock end slightly.
TEST(RequestSpans, OverrunningDurationsAreClampedToTheEnd) {
    const RequestTrace t = trace_under_front();
    sched::Usage u;
    u.admitted = u.first_token = true;
    u.cached_tokens_device = 4;
    u.queue_ms = 9;
    u.restore_ms = 5;
    u.ttft_ms = 12;
    const uint64_t end = t.start_ns + 10 * kMs;
    for (const auto& s : request_spans(t, u, end, 0, "")) {
        EXPECT_LE(s.end_ns, end) << s.name;
        EXPECT_LE(s.start_ns, s.end_ns) << s.name;
    }
}

TEST(RequestSpans, RootWhenNoParent) {
    RequestTrace t = trace_under_front();
    t.parent.reset();
    const auto spans = request_spans(t, sched::Usage{}, t.start_ns, 0, "");
    EXPECT_FALSE(by_name(spans).at("deltagate.worker.v1.Worker/Generate").parent_span_id.has_value());
}

}  // namespace
}  // namespace dg::worker
