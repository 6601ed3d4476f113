// libFuzzer target: the front's request validation and chat rendering (services/front/request_builder.*)
// with the tiny tokenizer fixture, over Generate and BatchGenerate requests built from the input — parsed
// as a serialized deltagate.v1 message, decoded field by field (FuzzedDataProvider), or decoded from an
// HTTP API body (OpenAI chat/completions, Anthropic messages: services/front/{openai,anthropic}_api.*,
// whose refusals must be 4xx with a message). A request
// the front accepts is then checked the way the worker will see it: the prompt ids are in the vocabulary
// and within the limits, max_tokens fits the context, and the worker request it becomes (serialized,
// parsed, services/worker/convert.* to_request) passes the worker's own sampling validation. Rejections
// must be INVALID_ARGUMENT / FAILED_PRECONDITION / NOT_FOUND with a message. Run by tests/fuzz/run_smoke.sh.
#include <fuzzer/FuzzedDataProvider.h>
#include <google/protobuf/stubs/logging.h>

#include <cstdio>
#include <cstdlib>

#include "scheduler/sampling.h"
#include "services/front/anthropic_api.h"
#include "services/front/openai_api.h"
#include "services/front/request_builder.h"
#include "services/worker/convert.h"
#include "tests/unit/tokenizer/test_util.h"

namespace {

using namespace dg;
namespace v1 = ::deltagate::v1;
namespace wpb = ::deltagate::worker::v1;

#define REQUIRE(cond)                                                                   \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            std::fprintf(stderr, "fuzz_front_request: %s failed (line %d)\n", #cond, __LINE__); \
            std::abort();                                                               \
        }                                                                               \
    } while (0)

const tok::Tokenizer& tokenizer() {
    static const std::unique_ptr<tok::Tokenizer> t = tok::testing::tiny();
    return *t;
}

void require_clean_rejection(const absl::Status& s) {
    REQUIRE(!s.ok());
    REQUIRE(!s.message().empty());
    REQUIRE(s.code() == absl::StatusCode::kInvalidArgument || s.code() == absl::StatusCode::kFailedPrecondition ||
            s.code() == absl::StatusCode::kNotFound);
}

int32_t prompt_limit(const front::ModelFacts& m, const front::FrontLimits& l) {
    int32_t lim = m.max_context > 0 ? m.max_context - 1 : INT32_MAX;
    if (l.max_prompt_tokens > 0) lim = std::min(lim, l.max_prompt_tokens);
    return lim;
}

// An accepted prompt + its stop criteria, as the worker will receive them.
void check_accepted(const front::BuiltPrompt& p, const v1::SamplingParams& sp, const v1::StopCriteria& stop, int n,
                    const front::ModelFacts& model, const front::FrontLimits& lim) {
    REQUIRE(!p.ids.empty());
    REQUIRE(p.ids.size() <= size_t(prompt_limit(model, lim)));
    for (int32_t id : p.ids) REQUIRE(id >= 0 && id < model.vocab_size);
    // The ids decode (what the front shows in logs and the HTTP API's echo).
    (void)tokenizer().decode(p.ids);
    auto mt = front::resolve_max_tokens(stop, p.ids.size(), model, lim);
    if (!mt.ok()) {
        require_clean_rejection(mt.status());
        return;
    }
    REQUIRE(*mt >= 1 && *mt <= lim.max_tokens);
    if (model.max_context > 0) REQUIRE(int64_t(p.ids.size()) + *mt <= model.max_context);
    wpb::GenerateRequest w;
    w.mutable_prompt_token_ids()->Assign(p.ids.begin(), p.ids.end());
    front::to_worker_sampling(sp, 42, w.mutable_sampling());
    w.set_n(n);
    w.set_max_tokens(*mt);
    w.mutable_stop_token_ids()->Assign(stop.stop_token_ids().begin(), stop.stop_token_ids().end());
    w.set_ignore_eos(stop.ignore_eos());
    wpb::GenerateRequest on_worker;
    REQUIRE(on_worker.ParseFromString(w.SerializeAsString()));
    const sched::Request r = worker::to_request(on_worker, model.max_context > 0 ? model.max_context : 1 << 20);
    // What the front accepts, the worker must accept too (or the client sees an error the front's
    // validation promised it would not get).
    const absl::Status ws = sched::validate_sampling(r.sampling);
    if (!ws.ok()) {
        std::fprintf(stderr, "the front accepted sampling the worker refuses: %s\n", std::string(ws.message()).c_str());
        std::abort();
    }
    REQUIRE(r.n == n);
    REQUIRE(r.max_tokens == *mt);
    REQUIRE(r.prompt == p.ids);
    for (int32_t t : r.stop_tokens) REQUIRE(t >= 0 && t < model.vocab_size);
}

void run_generate(const v1::GenerateRequest& req, const front::ModelFacts& model, const front::FrontLimits& lim) {
    if (auto s = front::validate_model_name(req.model(), model); !s.ok()) return require_clean_rejection(s);
    const int n = req.n() == 0 ? 1 : req.n();
    if (n < 0 || n > lim.max_fanout) return;
    if (auto s = front::validate_sampling(req.sampling()); !s.ok()) return require_clean_rejection(s);
    if (auto s = front::validate_stop(req.stop(), model, lim); !s.ok()) return require_clean_rejection(s);
    if (auto s = front::validate_logprobs(req.logprobs(), lim); !s.ok()) return require_clean_rejection(s);
    auto p = front::build_prompt(req.prompt(), &tokenizer(), model, lim);
    if (!p.ok()) return require_clean_rejection(p.status());
    check_accepted(*p, req.sampling(), req.stop(), n, model, lim);
}

void run_batch(const v1::BatchGenerateRequest& req, const front::ModelFacts& model, const front::FrontLimits& lim) {
    const int k = req.continuations_size();
    if (k == 0 || k > lim.max_fanout) return;
    if (auto s = front::validate_logprobs(req.logprobs(), lim); !s.ok()) return require_clean_rejection(s);
    for (int i = 0; i < k; ++i) {
        const auto& c = req.continuations(i);
        const v1::SamplingParams& sp = c.has_sampling() ? c.sampling() : req.default_sampling();
        const v1::StopCriteria& st = c.has_stop() ? c.stop() : req.default_stop();
        if (auto s = front::validate_sampling(sp); !s.ok()) return require_clean_rejection(s);
        if (auto s = front::validate_stop(st, model, lim); !s.ok()) return require_clean_rejection(s);
        std::string text = c.text();
        std::vector<int32_t> ids(c.token_ids().ids().begin(), c.token_ids().ids().end());
        auto p = front::build_prompt(req.prefix(), &tokenizer(), model, lim, c.has_text() ? &text : nullptr,
                                     c.has_token_ids() ? &ids : nullptr);
        if (!p.ok()) return require_clean_rejection(p.status());
        check_accepted(*p, sp, st, 1, model, lim);
    }
}

// Field-by-field decoding: every input is a well-formed request, so the fuzzer spends its time inside
// validation and the chat template rather than in the wire format.
const char* const kRoles[] = {"system", "user", "assistant", "tool", "", "User", "developer"};
const char* const kSnippets[] = {"<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
                                 "hello", " world", "\n", "{\"name\":\"f\",\"arguments\":{}}", "\xC3\xA9", "\xFF"};

std::string fuzz_text(FuzzedDataProvider& f) {
    std::string s;
    const int parts = f.ConsumeIntegralInRange(0, 6);
    for (int i = 0; i < parts; ++i) {
        if (f.ConsumeBool()) s += kSnippets[f.ConsumeIntegralInRange<size_t>(0, std::size(kSnippets) - 1)];
        else s += f.ConsumeRandomLengthString(64);
    }
    return s;
}

float fuzz_float(FuzzedDataProvider& f) {
    switch (f.ConsumeIntegralInRange(0, 5)) {
        case 0: return 0.f;
        case 1: return 1.f;
        case 2: return -0.f;
        case 3: return f.ConsumeFloatingPointInRange(-3.f, 3.f);
        case 4: return f.ConsumeProbability<float>();
        default: return f.ConsumeFloatingPoint<float>();  // inf, nan, huge
    }
}

void fuzz_sampling(FuzzedDataProvider& f, v1::SamplingParams* s) {
    s->set_temperature(fuzz_float(f));
    s->set_top_p(fuzz_float(f));
    s->set_top_k(f.ConsumeIntegralInRange(-2, 100));
    s->set_min_p(fuzz_float(f));
    s->set_repetition_penalty(fuzz_float(f));
    s->set_presence_penalty(fuzz_float(f));
    s->set_frequency_penalty(fuzz_float(f));
    if (f.ConsumeBool()) s->set_seed(f.ConsumeIntegral<uint64_t>());
}

void fuzz_stop(FuzzedDataProvider& f, v1::StopCriteria* s) {
    s->set_max_tokens(f.ConsumeIntegralInRange(-1, 5000));
    const int n = f.ConsumeIntegralInRange(0, 3);
    for (int i = 0; i < n; ++i) s->add_stop(fuzz_text(f));
    const int m = f.ConsumeIntegralInRange(0, 3);
    for (int i = 0; i < m; ++i) s->add_stop_token_ids(f.ConsumeIntegralInRange(-1, 300));
    s->set_ignore_eos(f.ConsumeBool());
}

void fuzz_prompt(FuzzedDataProvider& f, v1::Prompt* p) {
    switch (f.ConsumeIntegralInRange(0, 3)) {
        case 0: p->set_text(fuzz_text(f)); break;
        case 1: {
            const int n = f.ConsumeIntegralInRange(0, 40);
            for (int i = 0; i < n; ++i) p->mutable_token_ids()->add_ids(f.ConsumeIntegralInRange(-2, 280));
            break;
        }
        case 2: {
            v1::Chat* c = p->mutable_chat();
            const int n = f.ConsumeIntegralInRange(0, 6);
            for (int i = 0; i < n; ++i) {
                v1::ChatMessage* m = c->add_messages();
                m->set_role(kRoles[f.ConsumeIntegralInRange<size_t>(0, std::size(kRoles) - 1)]);
                m->set_content(fuzz_text(f));
                if (f.ConsumeBool()) m->set_reasoning_content(fuzz_text(f));
                const int calls = f.ConsumeIntegralInRange(0, 2);
                for (int j = 0; j < calls; ++j) {
                    v1::ToolCall* tc = m->add_tool_calls();
                    tc->set_name(f.ConsumeRandomLengthString(16));
                    tc->set_arguments_json(f.ConsumeBool() ? "{\"a\":[1,2,{\"b\":null}]}" : f.ConsumeRandomLengthString(32));
                }
            }
            const int tools = f.ConsumeIntegralInRange(0, 2);
            for (int i = 0; i < tools; ++i)
                c->add_tools()->set_json(f.ConsumeBool()
                                             ? "{\"type\":\"function\",\"function\":{\"name\":\"get\",\"parameters\":{}}}"
                                             : f.ConsumeRandomLengthString(48));
            if (f.ConsumeBool()) c->set_enable_thinking(f.ConsumeBool());
            c->set_prefix_stable(f.ConsumeBool());
            break;
        }
        default: break;  // unset
    }
}

// An HTTP API body: a 4xx with a message, or a request that goes through the same checks as gRPC's.
void run_http(int api, const std::string& body, const front::ModelFacts& model, const front::FrontLimits& lim) {
    const front::http::json j = front::http::json::parse(body, nullptr, false);
    if (j.is_discarded()) return;
    front::http::ApiError err;
    bool ok = false;
    v1::GenerateRequest req;
    if (api == 0) {
        front::http::ParsedGenerate out;
        ok = front::http::parse_chat_request(j, true, &out, &err);
        req = out.request;
    } else if (api == 1) {
        front::http::ParsedGenerate out;
        ok = front::http::parse_completion_request(j, &out, &err);
        req = out.request;
    } else {
        front::http::ParsedMessages out;
        ok = front::http::parse_messages_request(j, true, &out, &err);
        req = out.request;
    }
    if (!ok) {
        REQUIRE(err.status >= 400 && err.status < 500 && !err.message.empty());
        (void)front::http::openai_error_body(err);
        (void)front::http::anthropic_error_body(err);
        return;
    }
    run_generate(req, model, lim);
}

}  // namespace

// Protobuf logs every string field with invalid UTF-8 it parses or serializes; the fuzzer makes many.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    google::protobuf::SetLogHandler(nullptr);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 4) return 0;
    FuzzedDataProvider f(data, size);
    const uint8_t mode = f.ConsumeIntegral<uint8_t>() % 7;
    front::ModelFacts model;
    model.name = "tiny";
    model.vocab_size = tokenizer().vocab_size();
    model.max_context = f.ConsumeIntegralInRange(0, 600);
    model.eos_ids = {267};
    front::FrontLimits lim;
    lim.max_prompt_tokens = f.ConsumeIntegralInRange(0, 300);
    lim.max_tokens = f.ConsumeIntegralInRange(1, 4096);
    lim.max_fanout = 8;
    if (mode == 0) {
        const std::string rest = f.ConsumeRemainingBytesAsString();
        v1::GenerateRequest req;
        if (req.ParseFromString(rest)) run_generate(req, model, lim);
    } else if (mode == 1) {
        const std::string rest = f.ConsumeRemainingBytesAsString();
        v1::BatchGenerateRequest req;
        if (req.ParseFromString(rest)) run_batch(req, model, lim);
    } else if (mode == 2) {
        v1::GenerateRequest req;
        if (f.ConsumeBool()) req.set_model(f.ConsumeBool() ? "tiny" : "other");
        req.set_n(f.ConsumeIntegralInRange(-1, 9));
        fuzz_prompt(f, req.mutable_prompt());
        fuzz_sampling(f, req.mutable_sampling());
        fuzz_stop(f, req.mutable_stop());
        req.mutable_logprobs()->set_top_logprobs(f.ConsumeIntegralInRange(-1, 25));
        run_generate(req, model, lim);
    } else if (mode >= 4) {
        run_http(mode - 4, f.ConsumeRemainingBytesAsString(), model, lim);
    } else {
        v1::BatchGenerateRequest req;
        fuzz_prompt(f, req.mutable_prefix());
        fuzz_sampling(f, req.mutable_default_sampling());
        fuzz_stop(f, req.mutable_default_stop());
        const int k = f.ConsumeIntegralInRange(0, 4);
        for (int i = 0; i < k; ++i) {
            v1::Continuation* c = req.add_continuations();
            if (f.ConsumeBool()) c->set_text(fuzz_text(f));
            else if (f.ConsumeBool())
                for (int j = f.ConsumeIntegralInRange(0, 5); j > 0; --j) c->mutable_token_ids()->add_ids(f.ConsumeIntegralInRange(-1, 280));
            if (f.ConsumeBool()) fuzz_sampling(f, c->mutable_sampling());
            if (f.ConsumeBool()) fuzz_stop(f, c->mutable_stop());
        }
        run_batch(req, model, lim);
    }
    return 0;
}
