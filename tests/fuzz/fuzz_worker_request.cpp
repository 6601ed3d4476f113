// libFuzzer target: the worker's request conversion (services/worker/convert.*) — a deltagate.worker.v1
// GenerateRequest from the wire (parsed from the input, or decoded field by field) becomes a scheduler
// Request whose defaults are resolved as documented, and the scheduler's sampling validation either
// refuses it with a message or leaves only finite, in-range parameters for the sampler; and the events
// and usage the engine reports survive the conversion back to the wire. Run by tests/fuzz/run_smoke.sh.
#include <fuzzer/FuzzedDataProvider.h>
#include <google/protobuf/stubs/logging.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "scheduler/sampling.h"
#include "services/worker/convert.h"

namespace {

using namespace dg;
namespace wpb = ::deltagate::worker::v1;

#define REQUIRE(cond)                                                                   \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            std::fprintf(stderr, "fuzz_worker_request: %s failed (line %d)\n", #cond, __LINE__); \
            std::abort();                                                               \
        }                                                                               \
    } while (0)

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

float fuzz_float(FuzzedDataProvider& f) {
    switch (f.ConsumeIntegralInRange(0, 4)) {
        case 0: return 0.f;
        case 1: return -0.f;
        case 2: return f.ConsumeFloatingPointInRange(-3.f, 3.f);
        case 3: return f.ConsumeProbability<float>();
        default: return f.ConsumeFloatingPoint<float>();
    }
}

void check_request(const wpb::GenerateRequest& in, int32_t max_seq_len) {
    const sched::Request r = worker::to_request(in, max_seq_len);
    REQUIRE(r.prompt.size() == size_t(in.prompt_token_ids_size()));
    for (size_t i = 0; i < r.prompt.size(); ++i) REQUIRE(r.prompt[i] == in.prompt_token_ids(int(i)));
    REQUIRE(r.n == (in.n() == 0 ? 1 : in.n()));
    if (in.max_tokens() == 0) {
        REQUIRE(r.max_tokens >= 1);
        if (in.prompt_token_ids_size() < max_seq_len)
            REQUIRE(int64_t(r.max_tokens) + in.prompt_token_ids_size() == max_seq_len);
    } else {
        REQUIRE(r.max_tokens == in.max_tokens());
    }
    const wpb::SamplingParams& s = in.sampling();
    REQUIRE(same_bits(r.sampling.top_p, s.top_p() == 0.f ? 1.f : s.top_p()));
    REQUIRE(same_bits(r.sampling.repetition_penalty, s.repetition_penalty() == 0.f ? 1.f : s.repetition_penalty()));
    REQUIRE(same_bits(r.sampling.temperature, s.temperature()));
    REQUIRE(r.sampling.seed == s.seed());
    REQUIRE(r.logprobs == (in.logprobs() || in.top_logprobs() > 0));
    REQUIRE(r.stop_tokens.size() == size_t(in.stop_token_ids_size()));
    REQUIRE(r.checkpoint_at.size() == size_t(in.checkpoint_at_size()));
    const absl::Status v = sched::validate_sampling(r.sampling);
    if (!v.ok()) {
        REQUIRE(v.code() == absl::StatusCode::kInvalidArgument && !v.message().empty());
        // The message reaches the client as the gRPC status.
        const grpc::Status g = worker::to_grpc(v);
        REQUIRE(g.error_code() == grpc::StatusCode::INVALID_ARGUMENT && g.error_message() == std::string(v.message()));
        return;
    }
    // What the sampler may rely on once a request is admitted.
    const sched::SamplingParams& p = r.sampling;
    REQUIRE(std::isfinite(p.temperature) && p.temperature >= 0);
    REQUIRE(p.top_p > 0 && p.top_p <= 1);
    REQUIRE(p.min_p >= 0 && p.min_p <= 1);
    REQUIRE(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0);
    REQUIRE(p.presence_penalty >= -2 && p.presence_penalty <= 2);
    REQUIRE(p.frequency_penalty >= -2 && p.frequency_penalty <= 2);
    REQUIRE(p.top_k >= 0);
}

void check_event(FuzzedDataProvider& f) {
    sched::Event e;
    e.index = f.ConsumeIntegral<int32_t>();
    e.token = f.ConsumeIntegral<int32_t>();
    e.finish = static_cast<sched::FinishReason>(f.ConsumeIntegralInRange(0, 5));
    e.request_done = f.ConsumeBool();
    e.logprob = f.ConsumeFloatingPoint<float>();
    for (int i = f.ConsumeIntegralInRange(0, 4); i > 0; --i)
        e.top_logprobs.emplace_back(f.ConsumeIntegral<int32_t>(), f.ConsumeFloatingPoint<float>());
    e.usage.prompt_tokens = f.ConsumeIntegral<int32_t>();
    e.usage.completion_tokens = f.ConsumeIntegral<int32_t>();
    e.usage.cached_tokens_host = f.ConsumeIntegral<int32_t>();
    e.usage.ttft_ms = f.ConsumeFloatingPoint<double>();
    wpb::GenerateEvent out;
    worker::to_proto(e, &out);
    wpb::GenerateEvent back;
    REQUIRE(back.ParseFromString(out.SerializeAsString()));
    REQUIRE(back.index() == e.index && back.token_id() == e.token && back.done() == e.request_done);
    REQUIRE(back.top_logprobs_size() == int(e.top_logprobs.size()));
    REQUIRE(back.finish_reason() != wpb::FINISH_REASON_UNSPECIFIED || e.finish == sched::FinishReason::kNone);
    if (e.request_done) {
        REQUIRE(back.usage().prompt_tokens() == e.usage.prompt_tokens);
        REQUIRE(back.usage().completion_tokens() == e.usage.completion_tokens);
        REQUIRE(back.usage().cached_tokens_host() == e.usage.cached_tokens_host);
    } else {
        REQUIRE(!back.has_usage());
    }
}

}  // namespace

// Protobuf logs every string field with invalid UTF-8 it parses or serializes; the fuzzer makes many.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    google::protobuf::SetLogHandler(nullptr);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    FuzzedDataProvider f(data, size);
    const uint8_t mode = f.ConsumeIntegral<uint8_t>() % 3;
    const int32_t max_seq_len = f.ConsumeIntegralInRange<int32_t>(1, 1 << 20);  // a real worker's context
    if (mode == 0) {
        wpb::GenerateRequest in;
        if (in.ParseFromString(f.ConsumeRemainingBytesAsString())) check_request(in, max_seq_len);
    } else if (mode == 1) {
        wpb::GenerateRequest in;
        for (int i = f.ConsumeIntegralInRange(0, 32); i > 0; --i) in.add_prompt_token_ids(f.ConsumeIntegral<int32_t>());
        wpb::SamplingParams* s = in.mutable_sampling();
        s->set_temperature(fuzz_float(f));
        s->set_top_p(fuzz_float(f));
        s->set_top_k(f.ConsumeIntegral<int32_t>());
        s->set_min_p(fuzz_float(f));
        s->set_repetition_penalty(fuzz_float(f));
        s->set_presence_penalty(fuzz_float(f));
        s->set_frequency_penalty(fuzz_float(f));
        s->set_seed(f.ConsumeIntegral<uint64_t>());
        in.set_n(f.ConsumeIntegral<int32_t>());
        in.set_max_tokens(f.ConsumeBool() ? 0 : f.ConsumeIntegral<int32_t>());
        for (int i = f.ConsumeIntegralInRange(0, 4); i > 0; --i) in.add_stop_token_ids(f.ConsumeIntegral<int32_t>());
        for (int i = f.ConsumeIntegralInRange(0, 4); i > 0; --i) in.add_checkpoint_at(f.ConsumeIntegral<int32_t>());
        in.set_top_logprobs(f.ConsumeIntegral<int32_t>());
        in.set_logprobs(f.ConsumeBool());
        check_request(in, max_seq_len);
    } else {
        check_event(f);
    }
    return 0;
}
