#include "services/front/inference_service.h"

#include <map>
#include <random>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/bearer_token.h"
#include "services/common/grpc_metadata.h"
#include "services/front/generate_call.h"

namespace dg::front {
namespace {

// A stream that ends at once with an error (bad input, overload, auth); the same writer and lifetime as
// every other stream (services/common/queued_writer.h).
class ErrorStream final : public QueuedWriter<v1::GenerateResponse> {
public:
    static grpc::ServerWriteReactor<v1::GenerateResponse>* start(const grpc::Status& s) {
        std::shared_ptr<ErrorStream> e(new ErrorStream());
        e->hold_until_done(e);
        e->end(s);
        e->flush();
        return e.get();  // holds itself until gRPC's OnDone
    }

private:
    ErrorStream() = default;
};


// "http" for requests the front's HTTP gateway (http_gateway.h) makes on behalf of an HTTP client, else
// "grpc": the metrics' protocol label. Only a label, so a gRPC client that sets it fools nothing else.
std::string protocol_of(grpc::CallbackServerContext* ctx) {
    return client_metadata(ctx, "x-deltagate-protocol") == "http" ? "http" : "grpc";
}

std::string new_request_id() {
    thread_local std::mt19937_64 gen(std::random_device{}());
    return absl::StrCat("req-", trace::to_hex(trace::new_span_id()));
}

uint64_t random_seed() {
    thread_local std::mt19937_64 gen(std::random_device{}());
    return gen();
}

// The server span and trace context of one RPC: continues the client's trace when it sent a valid
// traceparent, else starts one. trace_id stays zero when the span is not sampled (nothing exported).
void start_trace(FrontState& front, grpc::CallbackServerContext* ctx, const std::string& method, CallPlan& plan) {
    plan.protocol = protocol_of(ctx);
    plan.incoming_traceparent = client_metadata(ctx, "traceparent");
    plan.incoming = trace::parse_traceparent(plan.incoming_traceparent);
    if (plan.incoming) plan.incoming->tracestate = client_metadata(ctx, "tracestate");
    if (!front.tracer().enabled()) return;
    const trace::TraceId trace = plan.incoming ? plan.incoming->trace_id : trace::new_trace_id();
    if (!trace::should_sample(front.tracer().config(), plan.incoming, trace)) {
        // Not sampled: the worker still gets a traceparent with the sampled flag off.
        plan.incoming = plan.incoming ? plan.incoming : std::optional<trace::TraceContext>(trace::TraceContext{trace, trace::new_span_id()});
        plan.incoming->sampled = false;
        return;
    }
    trace::Span& s = plan.server_span;
    s.trace_id = trace;
    s.span_id = trace::new_span_id();
    if (plan.incoming) s.parent_span_id = plan.incoming->span_id;
    if (plan.incoming) s.tracestate = plan.incoming->tracestate;
    s.name = "deltagate.v1.Inference/" + method;
    s.kind = trace::SpanKind::kServer;
    s.start_ns = trace::unix_nanos_now();
    s.set("rpc.system", std::string("grpc"));
    s.set("rpc.service", std::string("deltagate.v1.Inference"));
    s.set("rpc.method", method);
    s.set("deltagate.protocol", plan.protocol);  // http: an OpenAI/Anthropic request through the HTTP API
}

// Finishes a span of a request rejected before streaming.
void reject_span(FrontState& front, CallPlan& plan, const grpc::Status& s) {
    if (plan.server_span.trace_id == trace::TraceId{}) return;
    plan.server_span.end_ns = trace::unix_nanos_now();
    plan.server_span.status = trace::SpanStatus::kError;
    plan.server_span.status_message = s.error_message();
    plan.server_span.set("rpc.grpc.status_code", int64_t(s.error_code()));
    plan.server_span.set("error.type", std::string(status_code_name(int(s.error_code()))));
    front.tracer().submit(plan.server_span);
}

// A stream rejected before it started: counted, its span closed, and a reactor that finishes with `s`.
grpc::ServerWriteReactor<v1::GenerateResponse>* reject_stream(FrontState& front, CallPlan& plan, const grpc::Status& s) {
    front.metrics().request_done(plan.rpc, int(s.error_code()), plan.protocol);
    reject_span(front, plan, s);
    return ErrorStream::start(s);
}

void add_gen_ai_attrs(trace::Span& s, const std::string& op, const std::string& model, const v1::SamplingParams& sp,
                      int32_t max_tokens, int n, const std::string& session, uint64_t seed) {
    if (s.trace_id == trace::TraceId{}) return;
    s.set("gen_ai.operation.name", op);
    s.set("gen_ai.provider.name", std::string("deltagate"));
    s.set("gen_ai.request.model", model);
    s.set("gen_ai.request.stream", true);
    s.set("gen_ai.request.max_tokens", int64_t(max_tokens));
    s.set("gen_ai.request.temperature", double(sp.temperature()));
    if (sp.top_p() > 0) s.set("gen_ai.request.top_p", double(sp.top_p()));
    if (sp.top_k() > 0) s.set("gen_ai.request.top_k", int64_t(sp.top_k()));
    if (sp.presence_penalty() != 0) s.set("gen_ai.request.presence_penalty", double(sp.presence_penalty()));
    if (sp.frequency_penalty() != 0) s.set("gen_ai.request.frequency_penalty", double(sp.frequency_penalty()));
    s.set("gen_ai.request.seed", int64_t(seed));
    if (n != 1) s.set("gen_ai.request.choice.count", int64_t(n));
    if (!session.empty()) s.set("gen_ai.conversation.id", session);
}

TrackOptions track_options(const tok::Tokenizer* tok, const BuiltPrompt& p, const v1::StopCriteria& stop,
                           const std::optional<bool>& return_text) {
    TrackOptions t;
    t.tokenizer = tok;
    t.return_text = return_text.value_or(true);
    t.stop.assign(stop.stop().begin(), stop.stop().end());
    t.include_stop = stop.include_stop_str();
    t.thinking = p.chat && p.thinking;
    t.tools = p.tools;
    return t;
}

// Fills a worker request from the parts every leg shares.
void fill_worker_request(worker::v1::GenerateRequest* r, const std::string& id, const std::vector<int32_t>& ids,
                         const v1::SamplingParams& sp, const v1::StopCriteria& stop, int32_t max_tokens, int n,
                         const v1::LogprobOptions& lp, int32_t priority, uint64_t salt,
                         const std::vector<int32_t>& checkpoints) {
    r->set_request_id(id);
    r->mutable_prompt_token_ids()->Assign(ids.begin(), ids.end());
    to_worker_sampling(sp, random_seed(), r->mutable_sampling());
    r->set_n(n);
    r->set_max_tokens(max_tokens);
    r->mutable_stop_token_ids()->Assign(stop.stop_token_ids().begin(), stop.stop_token_ids().end());
    r->set_ignore_eos(stop.ignore_eos());
    r->set_priority(priority);
    r->set_cache_salt(salt);
    for (int32_t c : checkpoints)
        if (c > 0 && c < int32_t(ids.size())) r->add_checkpoint_at(c);
    r->set_top_logprobs(lp.top_logprobs());
    r->set_logprobs(lp.logprobs() || lp.top_logprobs() > 0);
}

}  // namespace

grpc::Status to_grpc(const absl::Status& s) {
    return s.ok() ? grpc::Status::OK : grpc::Status(grpc::StatusCode(int(s.code())), std::string(s.message()));
}

grpc::Status InferenceService::check_auth(grpc::CallbackServerContext* ctx) const {
    const std::string& token = front_.options().auth_token;
    if (token.empty()) return grpc::Status::OK;
    const std::string got = client_metadata(ctx, "authorization");
    const std::string want = "Bearer " + token;
    if (auth::constant_time_equal(got, want)) return grpc::Status::OK;
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        got.empty() ? "this front needs a bearer token: send metadata 'authorization: Bearer <token>'"
                                    : "the bearer token in 'authorization' is not valid for this front");
}

grpc::ServerUnaryReactor* InferenceService::unary_done(grpc::CallbackServerContext* ctx, const char* rpc,
                                                       const grpc::Status& s) {
    front_.metrics().request_done(rpc, int(s.error_code()), protocol_of(ctx));
    auto* r = ctx->DefaultReactor();
    r->Finish(s);
    return r;
}

grpc::Status InferenceService::admit_stream(grpc::CallbackServerContext* ctx, const std::string& model_name,
                                            ModelFacts* model) {
    if (auto s = check_auth(ctx); !s.ok()) return s;
    const FrontLimits& lim = front_.options().limits;
    if (front_.inflight.load() >= lim.max_inflight) {
        // Nothing has started on this call yet: the trailing metadata can be set here.
        const int64_t wait_ms = front_.retry_after_ms();
        ctx->AddTrailingMetadata(kRetryAfterMsKey, std::to_string(wait_ms));
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            absl::StrCat("this front already runs ", lim.max_inflight, " streams (--max-inflight): retry in ",
                                         wait_ms, " ms or add front replicas"));
    }
    auto m = front_.model();
    if (!m.ok()) return to_grpc(m.status());
    if (auto s = validate_model_name(model_name, *m); !s.ok()) return to_grpc(s);
    *model = *std::move(m);
    return grpc::Status::OK;
}

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::Generate(grpc::CallbackServerContext* ctx,
                                                                            const v1::GenerateRequest* req) {
    CallPlan plan;
    plan.start = std::chrono::steady_clock::now();
    plan.rpc = "Generate";
    start_trace(front_, ctx, "Generate", plan);
    auto reject = [&](const grpc::Status& s) { return reject_stream(front_, plan, s); };
    ModelFacts facts;
    if (auto s = admit_stream(ctx, req->model(), &facts); !s.ok()) return reject(s);
    const FrontLimits& lim = front_.options().limits;
    const int n = req->n() == 0 ? 1 : req->n();
    if (n < 0 || n > lim.max_fanout)
        return reject(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   absl::StrCat("n = ", req->n(), ": must be in [1, ", lim.max_fanout, "] (--max-fanout)")));
    if (auto s = validate_sampling(req->sampling()); !s.ok()) return reject(to_grpc(s));
    if (auto s = validate_stop(req->stop(), facts, lim); !s.ok()) return reject(to_grpc(s));
    if (auto s = validate_logprobs(req->logprobs(), lim); !s.ok()) return reject(to_grpc(s));
    const tok::Tokenizer* tok = front_.tokenizer();
    auto prompt = build_prompt(req->prompt(), tok, facts, lim);
    if (!prompt.ok()) return reject(to_grpc(prompt.status()));
    auto max_tokens = resolve_max_tokens(req->stop(), prompt->ids.size(), facts, lim);
    if (!max_tokens.ok()) return reject(to_grpc(max_tokens.status()));

    plan.request_id = req->request_id().empty() ? new_request_id() : req->request_id();
    plan.model = facts.name;
    plan.operation = prompt->chat ? "chat" : "text_completion";
    plan.session_id = req->cache().session_id();
    plan.cache_salt = salt_from_string(req->cache().cache_salt());
    plan.logprobs = req->logprobs().logprobs() || req->logprobs().top_logprobs() > 0;
    plan.stop.assign(req->stop().stop().begin(), req->stop().stop().end());
    std::optional<bool> rt;
    if (req->has_return_text()) rt = req->return_text();
    LegPlan leg;
    std::vector<int32_t> ckpts(req->cache().checkpoint_at().begin(), req->cache().checkpoint_at().end());
    fill_worker_request(&leg.request, plan.request_id + "#0", prompt->ids, req->sampling(), req->stop(), *max_tokens, n,
                        req->logprobs(), req->priority(), plan.cache_salt, ckpts);
    for (int i = 0; i < n; ++i) {
        leg.out_index.push_back(i);
        plan.tracks.push_back(track_options(tok, *prompt, req->stop(), rt));
    }
    add_gen_ai_attrs(plan.server_span, plan.operation, plan.model, req->sampling(), *max_tokens, n, plan.session_id,
                     leg.request.sampling().seed());
    plan.server_span.set("deltagate.request_id", plan.request_id);
    plan.legs.push_back(std::move(leg));
    auto call = GenerateCall::create(front_, ctx, std::move(plan));
    call->start();
    return call.get();  // the call holds itself until gRPC's OnDone
}

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::BatchGenerate(grpc::CallbackServerContext* ctx,
                                                                                 const v1::BatchGenerateRequest* req) {
    CallPlan plan;
    plan.start = std::chrono::steady_clock::now();
    plan.rpc = "BatchGenerate";
    start_trace(front_, ctx, "BatchGenerate", plan);
    auto reject = [&](const grpc::Status& s) { return reject_stream(front_, plan, s); };
    auto bad = [&](auto&&... parts) { return reject(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat(parts...))); };
    ModelFacts facts;
    if (auto s = admit_stream(ctx, req->model(), &facts); !s.ok()) return reject(s);
    const FrontLimits& lim = front_.options().limits;
    const int k = req->continuations_size();
    if (k == 0) return bad("continuations is empty: give at least one");
    if (k > lim.max_fanout) return bad(k, " continuations; this front allows at most ", lim.max_fanout, " (--max-fanout)");
    if (auto s = validate_logprobs(req->logprobs(), lim); !s.ok()) return reject(to_grpc(s));
    const tok::Tokenizer* tok = front_.tokenizer();

    plan.request_id = req->request_id().empty() ? new_request_id() : req->request_id();
    plan.model = facts.name;
    plan.session_id = req->cache().session_id();
    plan.cache_salt = salt_from_string(req->cache().cache_salt());
    plan.logprobs = req->logprobs().logprobs() || req->logprobs().top_logprobs() > 0;
    std::optional<bool> rt;
    if (req->has_return_text()) rt = req->return_text();

    // Build every continuation's prompt; group identical (prompt, sampling, stop) into one leg with n > 1.
    struct Built {
        BuiltPrompt prompt;
        v1::SamplingParams sampling;
        v1::StopCriteria stop;
        int32_t max_tokens;
    };
    std::vector<Built> built;
    for (int i = 0; i < k; ++i) {
        const auto& c = req->continuations(i);
        const v1::SamplingParams& sp = c.has_sampling() ? c.sampling() : req->default_sampling();
        const v1::StopCriteria& st = c.has_stop() ? c.stop() : req->default_stop();
        if (auto s = validate_sampling(sp); !s.ok()) return bad("continuations[", i, "]: ", s.message());
        if (auto s = validate_stop(st, facts, lim); !s.ok()) return bad("continuations[", i, "]: ", s.message());
        std::string text = c.text();
        std::vector<int32_t> ids(c.token_ids().ids().begin(), c.token_ids().ids().end());
        auto p = build_prompt(req->prefix(), tok, facts, lim, c.has_text() ? &text : nullptr,
                              c.has_token_ids() ? &ids : nullptr);
        if (!p.ok()) {
            grpc::Status g = to_grpc(p.status());
            return reject(grpc::Status(g.error_code(), absl::StrCat("continuations[", i, "]: ", g.error_message())));
        }
        auto mt = resolve_max_tokens(st, p->ids.size(), facts, lim);
        if (!mt.ok()) return bad("continuations[", i, "]: ", mt.status().message());
        built.push_back({std::move(*p), sp, st, *mt});
    }
    plan.operation = built[0].prompt.chat ? "chat" : "text_completion";
    // The shared prefix: where the continuations' prompts first differ (a checkpoint there is what siblings
    // resume from). For one distinct prompt it is the whole prompt (the worker checkpoints its end anyway).
    size_t common = built[0].prompt.ids.size();
    for (const auto& b : built) {
        size_t j = 0;
        while (j < common && j < b.prompt.ids.size() && b.prompt.ids[j] == built[0].prompt.ids[j]) ++j;
        common = j;
    }
    std::vector<int32_t> ckpts(req->cache().checkpoint_at().begin(), req->cache().checkpoint_at().end());
    ckpts.push_back(int32_t(common));
    std::map<std::string, int> leg_of;  // serialized (prompt, sampling, stop) -> leg
    for (int i = 0; i < k; ++i) {
        const Built& b = built[size_t(i)];
        // Seeds differ per continuation unless the caller fixed them: samples of one leg fork from one seed.
        std::string key = absl::StrCat(absl::StrJoin(b.prompt.ids, ","), "|", b.sampling.SerializeAsString(), "|",
                                       b.stop.SerializeAsString());
        auto [it, fresh] = leg_of.emplace(key, int(plan.legs.size()));
        if (fresh) {
            LegPlan leg;
            fill_worker_request(&leg.request, absl::StrCat(plan.request_id, "#", plan.legs.size()), b.prompt.ids,
                                b.sampling, b.stop, b.max_tokens, 0, req->logprobs(), req->priority(),
                                plan.cache_salt, ckpts);
            plan.legs.push_back(std::move(leg));
        }
        LegPlan& leg = plan.legs[size_t(it->second)];
        leg.out_index.push_back(i);
        leg.request.set_n(int32_t(leg.out_index.size()));
        plan.tracks.push_back(track_options(tok, b.prompt, b.stop, rt));
    }
    plan.stagger = plan.legs.size() > 1 && common > 0;
    add_gen_ai_attrs(plan.server_span, plan.operation, plan.model, req->default_sampling(), built[0].max_tokens, k,
                     plan.session_id, plan.legs[0].request.sampling().seed());
    plan.server_span.set("deltagate.request_id", plan.request_id);
    plan.server_span.set("deltagate.fanout.legs", int64_t(plan.legs.size()));
    plan.server_span.set("deltagate.fanout.shared_prefix_tokens", int64_t(common));
    auto call = GenerateCall::create(front_, ctx, std::move(plan));
    call->start();
    return call.get();  // the call holds itself until gRPC's OnDone
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* ctx, const v1::TokenizeRequest* req,
                                                     v1::TokenizeResponse* resp) {
    if (auto s = check_auth(ctx); !s.ok()) return unary_done(ctx, "Tokenize", s);
    auto model = front_.model();
    if (!model.ok()) return unary_done(ctx, "Tokenize", to_grpc(model.status()));
    if (auto s = validate_model_name(req->model(), *model); !s.ok()) return unary_done(ctx, "Tokenize", to_grpc(s));
    const tok::Tokenizer* tok = front_.tokenizer();
    auto p = build_prompt(req->prompt(), tok, *model, front_.options().limits);
    if (!p.ok()) return unary_done(ctx, "Tokenize", to_grpc(p.status()));
    resp->mutable_token_ids()->Assign(p->ids.begin(), p->ids.end());
    if (tok)
        for (int32_t id : p->ids) {
            auto d = tok->decode({id});
            resp->add_tokens(d.ok() ? *d : std::string());
        }
    return unary_done(ctx, "Tokenize", grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(grpc::CallbackServerContext* ctx,
                                                       const v1::DetokenizeRequest* req, v1::DetokenizeResponse* resp) {
    if (auto s = check_auth(ctx); !s.ok()) return unary_done(ctx, "Detokenize", s);
    auto model = front_.model();
    if (!model.ok()) return unary_done(ctx, "Detokenize", to_grpc(model.status()));
    const tok::Tokenizer* tok = front_.tokenizer();
    if (!tok)
        return unary_done(ctx, "Detokenize",
                          grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                       "this front has no tokenizer for the model (start it with --tokenizer)"));
    std::vector<int32_t> ids(req->token_ids().begin(), req->token_ids().end());
    tok::DecodeOptions opt;
    opt.skip_special = req->skip_special();
    auto text = tok->decode(ids, opt);
    if (!text.ok()) return unary_done(ctx, "Detokenize", grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                                                      std::string(text.status().message())));
    resp->set_text(*text);
    return unary_done(ctx, "Detokenize", grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ListModels(grpc::CallbackServerContext* ctx, const v1::ListModelsRequest*,
                                                       v1::ListModelsResponse* resp) {
    if (auto s = check_auth(ctx); !s.ok()) return unary_done(ctx, "ListModels", s);
    auto model = front_.model();
    if (!model.ok()) return unary_done(ctx, "ListModels", to_grpc(model.status()));
    const FrontLimits& lim = front_.options().limits;
    auto* m = resp->add_models();
    m->set_name(model->name);
    if (auto info = front_.pool().any_info()) m->set_arch(info->arch());
    m->set_vocab_size(model->vocab_size);
    m->set_max_context(model->max_context);
    m->set_has_tokenizer(front_.tokenizer() != nullptr);
    m->set_max_prompt_tokens(lim.max_prompt_tokens > 0 ? lim.max_prompt_tokens : model->max_context - 1);
    m->set_max_tokens(lim.max_tokens);
    m->set_max_fanout(lim.max_fanout);
    m->set_workers_healthy(front_.pool().healthy_count());
    m->set_workers_total(int32_t(front_.pool().workers().size()));
    return unary_done(ctx, "ListModels", grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::Abort(grpc::CallbackServerContext* ctx, const v1::AbortRequest* req,
                                                  v1::AbortResponse* resp) {
    if (auto s = check_auth(ctx); !s.ok()) return unary_done(ctx, "Abort", s);
    std::vector<std::string> ids(req->request_ids().begin(), req->request_ids().end());
    // Streams on this replica end here; the request may also run from another front replica (behind a
    // load balancer): every worker is asked to abort the legs sent under these public ids, which ends
    // that replica's stream with CANCELLED too. The answer waits for the workers (bounded).
    struct Pending {
        std::mutex mu;
        std::set<std::string> found;
        int left = 0;
    };
    auto p = std::make_shared<Pending>();
    for (std::string& id : front_.abort_calls(ids)) p->found.insert(std::move(id));
    std::vector<std::shared_ptr<WorkerHandle>> workers;
    for (auto& w : front_.pool().workers())
        if (w->healthy()) workers.push_back(std::move(w));
    auto* reactor = ctx->DefaultReactor();
    auto finish = [this, reactor, resp, p, protocol = protocol_of(ctx)] {
        resp->set_found(int32_t(p->found.size()));
        front_.metrics().request_done("Abort", 0, protocol);
        reactor->Finish(grpc::Status::OK);
    };
    if (ids.empty() || workers.empty()) {
        finish();
        return reactor;
    }
    p->left = int(workers.size());
    worker::v1::AbortRequest wreq;
    for (const std::string& id : ids) wreq.add_public_request_ids(id);
    for (auto& w : workers)
        abort_async(std::move(w), wreq, 2000, [p, finish](const grpc::Status& st, const worker::v1::AbortResponse& r) {
            bool last;
            {
                std::lock_guard<std::mutex> l(p->mu);
                if (st.ok()) p->found.insert(r.found_ids().begin(), r.found_ids().end());
                last = --p->left == 0;
            }
            if (last) finish();
        });
    return reactor;
}

}  // namespace dg::front
