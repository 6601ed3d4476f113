#include "services/front/http_gateway.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/common/retry_after.h"
#include "services/common/status_http.h"
#include "services/front/anthropic_api.h"
#include "services/front/openai_api.h"

namespace dg::front {
namespace {

using http::ApiError;
using http::json;

constexpr auto kUnaryDeadline = std::chrono::seconds(30);

const char* kJson = "application/json";

// The metadata an HTTP request carries into the in-process gRPC call: the API key (Authorization: Bearer,
// or Anthropic's x-api-key) as the bearer token the gRPC service checks, the W3C trace context, and the
// protocol label.
void add_metadata(const HttpMessage& m, grpc::ClientContext& ctx) {
    ctx.AddMetadata("x-deltagate-protocol", "http");
    std::string auth = m.header("authorization");
    if (auth.empty() && !m.header("x-api-key").empty()) auth = "Bearer " + m.header("x-api-key");
    if (!auth.empty()) ctx.AddMetadata("authorization", auth);
    if (const std::string tp = m.header("traceparent"); !tp.empty()) ctx.AddMetadata("traceparent", tp);
    if (const std::string ts = m.header("tracestate"); !ts.empty()) ctx.AddMetadata("tracestate", ts);
}

// A failed gRPC call as the HTTP error it is; the bearer-token wording is made HTTP's. `ctx` (the finished
// call's, may be null) carries an overload refusal's retry-after hint.
ApiError from_grpc(const grpc::Status& s, const grpc::ClientContext* ctx = nullptr) {
    ApiError e;
    if (ctx && s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED)
        e.retry_after_ms = retry_after_ms_from(ctx->GetServerTrailingMetadata());
    e.status = http_status_for(int(s.error_code()));
    e.message = s.error_message();
    e.code = absl::AsciiStrToLower(status_code_name(int(s.error_code())));
    if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED)
        e.message = e.message.find("needs a bearer token") != std::string::npos
                        ? "this server needs an API key: send 'Authorization: Bearer <key>' (or 'x-api-key: <key>')"
                        : "the API key is not valid for this server";
    return e;
}

enum class Dialect { kOpenAI, kAnthropic };

void send_error(HttpExchange& x, const ApiError& e, Dialect d) {
    // Retry-After is in whole seconds (RFC 9110): rounded up, so a client never comes back too early.
    if (e.retry_after_ms > 0) x.add_header("Retry-After", std::to_string((e.retry_after_ms + 999) / 1000));
    x.respond(e.status, kJson, d == Dialect::kOpenAI ? http::openai_error_body(e) : http::anthropic_error_body(e));
}

// One Generate call over the in-process channel, read by the connection's thread: the reactor queues the
// messages and wakes the thread through an eventfd, and the thread also watches the client's socket, so a
// client that hangs up cancels the call at once (not at the next write).
class GenerateReader : public grpc::ClientReadReactor<v1::GenerateResponse>, public HttpGateway::Stream {
public:
    GenerateReader() : efd_(::eventfd(0, EFD_CLOEXEC)) {}
    ~GenerateReader() override { ::close(efd_); }

    void start(v1::Inference::Stub& stub, const v1::GenerateRequest& req) {
        stub.async()->Generate(&ctx, &req, this);
        StartRead(&msg_);
        StartCall();
    }
    void OnReadDone(bool ok) override {
        if (!ok) return;  // OnDone follows
        {
            std::lock_guard<std::mutex> l(mu_);
            queue_.push_back(msg_);
            signal();
        }
        StartRead(&msg_);
    }
    // The connection's thread destroys this reader as soon as it sees status_ set, so everything OnDone
    // touches (the eventfd, the condition variable) is touched under mu_, before that thread can look.
    void OnDone(const grpc::Status& s) override {
        std::lock_guard<std::mutex> l(mu_);
        status_ = s;
        signal();
        cv_.notify_all();
    }
    // Next messages (all queued), or the final status when the stream is over. Blocks; false when the HTTP
    // client went away (the call is then cancelled and waited for).
    bool next(HttpExchange& x, std::deque<v1::GenerateResponse>* out, std::optional<grpc::Status>* done) {
        for (;;) {
            {
                std::lock_guard<std::mutex> l(mu_);
                out->swap(queue_);
                queue_.clear();
                if (out->empty() && status_) *done = status_;
            }
            if (!out->empty() || *done) return true;
            if (!x.wait(efd_)) {
                cancel_and_wait();
                return false;
            }
            uint64_t v;
            [[maybe_unused]] ssize_t n = ::read(efd_, &v, sizeof v);
        }
    }
    void cancel() override { ctx.TryCancel(); }  // drain(): any thread
    void cancel_and_wait() {
        ctx.TryCancel();
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return status_.has_value(); });
    }

    grpc::ClientContext ctx;

private:
    void signal() {
        const uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(efd_, &one, sizeof one);
    }
    int efd_;
    v1::GenerateResponse msg_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<v1::GenerateResponse> queue_;
    std::optional<grpc::Status> status_;
};

// What a route does with the messages of its Generate call.
struct StreamEncoder {
    std::string content_type = "text/event-stream";
    std::function<std::string(const v1::GenerateResponse&)> frames;      // streaming: SSE frames per message
    std::function<std::string()> end;                                     // streaming: closing frames
    std::function<std::string(const ApiError&)> error_frames;             // streaming: an error after the start
    std::function<void(const v1::GenerateResponse&)> add;                 // whole: fold a message
    std::function<std::string()> body;                                    // whole: the JSON body
};

// Runs `req` and answers the HTTP client: streamed (SSE, begun at the first message so that a request
// refused up front still gets its HTTP error status) or whole.
void run_generate(HttpGateway& gw, v1::Inference::Stub& stub, const HttpMessage& m, HttpExchange& x,
                  const v1::GenerateRequest& req, bool stream, StreamEncoder& enc, Dialect dialect) {
    // On the heap, not the stack: a reactor that touched it after its end would be a use after free that
    // AddressSanitizer reports (test_front_lifetime_asan), not a silent write into a reused frame. Shared
    // with the gateway's drain list while the call runs.
    auto owned = std::make_shared<GenerateReader>();
    GenerateReader& reader = *owned;
    if (!gw.track(owned)) return send_error(x, {503, "the server is shutting down: retry on another replica", "", "unavailable"}, dialect);
    struct Untrack {
        HttpGateway& gw;
        std::shared_ptr<GenerateReader> r;
        ~Untrack() { gw.untrack(r); }  // after the call ended: every return below has waited for OnDone
    } untrack{gw, owned};
    add_metadata(m, reader.ctx);
    reader.start(stub, req);
    std::deque<v1::GenerateResponse> batch;
    std::optional<grpc::Status> done;
    bool started = false;
    while (reader.next(x, &batch, &done)) {
        if (done) break;
        if (stream) {
            std::string out;
            for (const auto& msg : batch) out += enc.frames(msg);
            if (!started) {
                started = true;
                if (!x.start_stream(200, enc.content_type)) {
                    reader.cancel_and_wait();
                    return;
                }
            }
            if (!x.write(out)) {
                reader.cancel_and_wait();
                return;
            }
        } else {
            for (const auto& msg : batch) enc.add(msg);
        }
        batch.clear();
    }
    if (!done) return;  // the client went away; the call was cancelled
    if (!done->ok()) {
        const ApiError e = from_grpc(*done, &reader.ctx);
        if (!started) return send_error(x, e, dialect);
        // Mid-stream failure: an error event, then the stream ends (no [DONE]: the output is incomplete).
        x.write(enc.error_frames(e));
        x.end();
        return;
    }
    if (stream) {
        if (!started && !x.start_stream(200, enc.content_type)) return;
        x.write(enc.end());
        x.end();
    } else {
        x.respond(200, kJson, enc.body());
    }
}

// The model name of this front (for responses), or an error when no worker has answered.
bool model_name(FrontState& front, std::string* name, ApiError* err) {
    auto m = front.model();
    if (!m.ok()) {
        *err = {503, std::string(m.status().message()), "", "unavailable"};
        return false;
    }
    *name = m->name;
    return true;
}

bool parse_body(const HttpMessage& m, json* out, ApiError* err) {
    *out = json::parse(m.body, nullptr, false);
    if (out->is_discarded()) {
        *err = {400, "the request body is not valid JSON", "", "invalid_json"};
        return false;
    }
    return true;
}

std::string version_string() {
#ifdef DG_VERSION
    return DG_VERSION;
#else
    return "unknown";
#endif
}

}  // namespace

HttpGateway::HttpGateway(HttpGatewayOptions opt, FrontState& front, std::shared_ptr<grpc::Channel> channel)
    : opt_(std::move(opt)), front_(front), channel_(std::move(channel)), stub_(v1::Inference::NewStub(channel_)) {}

absl::StatusOr<std::unique_ptr<HttpGateway>> HttpGateway::start(HttpGatewayOptions opt, FrontState& front,
                                                                std::shared_ptr<grpc::Channel> channel) {
    std::unique_ptr<HttpGateway> g(new HttpGateway(std::move(opt), front, std::move(channel)));
    HttpConnServer::Options so;
    so.max_body_bytes = size_t(front.options().limits.max_message_bytes);
    so.max_connections = std::max(64, front.options().limits.max_inflight + 16);
    auto s = HttpConnServer::start(g->opt_.listen, so, [raw = g.get()](const HttpMessage& m, HttpExchange& x) {
        if (!raw->enter()) {
            x.add_header("Connection", "close");
            return send_error(x, {503, "the server is shutting down: retry on another replica", "", "unavailable"},
                              m.path == "/v1/messages" ? Dialect::kAnthropic : Dialect::kOpenAI);
        }
        raw->handle(m, x);
        raw->leave();
    });
    if (!s.ok()) return absl::Status(s.status().code(), absl::StrCat("--http-listen: ", s.status().message()));
    g->server_ = std::move(*s);
    return g;
}

HttpGateway::~HttpGateway() { stop(); }

bool HttpGateway::enter() {
    std::lock_guard<std::mutex> l(gate_mu_);
    if (draining_) return false;
    ++active_;
    return true;
}

void HttpGateway::leave() {
    {
        std::lock_guard<std::mutex> l(gate_mu_);
        --active_;
    }
    gate_cv_.notify_all();
}

bool HttpGateway::track(const std::shared_ptr<Stream>& s) {
    std::lock_guard<std::mutex> l(gate_mu_);
    if (draining_) return false;
    streams_.insert(s);
    return true;
}

void HttpGateway::untrack(const std::shared_ptr<Stream>& s) {
    std::lock_guard<std::mutex> l(gate_mu_);
    streams_.erase(s);
}

void HttpGateway::drain(std::chrono::steady_clock::time_point deadline) {
    if (server_) server_->stop_accepting();
    std::unique_lock<std::mutex> l(gate_mu_);
    draining_ = true;
    if (gate_cv_.wait_until(l, deadline, [&] { return active_ == 0; })) return;
    // Past the grace: cancel what still runs (outside the lock: cancelling may run reactions inline) and
    // wake handlers blocked on slow clients, then wait for the last handler to leave.
    std::vector<std::shared_ptr<Stream>> running(streams_.begin(), streams_.end());
    l.unlock();
    for (auto& s : running) s->cancel();
    running.clear();
    if (server_) server_->shutdown_connections();
    l.lock();
    gate_cv_.wait(l, [&] { return active_ == 0; });
}

void HttpGateway::stop() {
    if (server_) server_->stop();
}

void HttpGateway::handle(const HttpMessage& m, HttpExchange& x) {
    // CORS only for the origins a flag allows (browsers enforce it; no header = no cross-origin access).
    if (const std::string origin = m.header("origin"); !origin.empty() && !opt_.cors_origins.empty()) {
        const bool any = std::find(opt_.cors_origins.begin(), opt_.cors_origins.end(), "*") != opt_.cors_origins.end();
        if (any || std::find(opt_.cors_origins.begin(), opt_.cors_origins.end(), origin) != opt_.cors_origins.end()) {
            x.add_header("Access-Control-Allow-Origin", any ? "*" : origin);
            x.add_header("Vary", "Origin");
            if (m.method == "OPTIONS") {
                x.add_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
                x.add_header("Access-Control-Allow-Headers",
                             "Authorization, Content-Type, x-api-key, anthropic-version, traceparent, tracestate");
                x.add_header("Access-Control-Max-Age", "600");
                x.respond(204, "", "");
                return;
            }
        }
    }
    const bool anthropic = m.path == "/v1/messages";
    const Dialect dialect = anthropic ? Dialect::kAnthropic : Dialect::kOpenAI;
    auto error = [&](int status, std::string msg, std::string param = "", std::string code = "") {
        send_error(x, ApiError{status, std::move(msg), std::move(param), std::move(code)}, dialect);
    };
    struct Route {
        const char* path;
        const char* method;
    };
    static const Route routes[] = {{"/v1/chat/completions", "POST"}, {"/v1/completions", "POST"},
                                   {"/v1/messages", "POST"},         {"/v1/models", "GET"},
                                   {"/health", "GET"},               {"/tokenize", "POST"},
                                   {"/detokenize", "POST"},          {"/version", "GET"}};
    const Route* route = nullptr;
    for (const Route& r : routes)
        if (m.path == r.path) route = &r;
    if (!route) return error(404, absl::StrCat("no route ", m.path, ": this server serves /v1/chat/completions, "
                                               "/v1/completions, /v1/messages, /v1/models, /health, /tokenize, "
                                               "/detokenize and /version"), "", "not_found");
    if (m.method != route->method && !(m.method == "HEAD" && std::string(route->method) == "GET")) {
        x.add_header("Allow", route->method);
        return error(405, absl::StrCat(m.path, " takes ", route->method, ", not ", m.method), "", "method_not_allowed");
    }

    if (m.path == "/health") {
        const int healthy = front_.pool().healthy_count();
        if (healthy > 0) return (void)x.respond(200, kJson, R"({"status":"ok"})");
        return error(503, "no worker is healthy yet: check that the workers are running and reachable from the front",
                     "", "unavailable");
    }
    if (m.path == "/version")
        return (void)x.respond(200, kJson, json{{"version", version_string()}, {"server", "deltagate"}}.dump());

    if (m.path == "/v1/models") {
        grpc::ClientContext ctx;
        add_metadata(m, ctx);
        ctx.set_deadline(std::chrono::system_clock::now() + kUnaryDeadline);
        v1::ListModelsResponse r;
        const grpc::Status s = stub_->ListModels(&ctx, {}, &r);
        if (!s.ok()) return send_error(x, from_grpc(s), dialect);
        json data = json::array();
        for (const auto& mi : r.models())
            data.push_back({{"id", mi.name()},
                            {"object", "model"},
                            {"created", 0},
                            {"owned_by", "deltagate"},
                            {"max_model_len", mi.max_context()},
                            {"meta", {{"arch", mi.arch()}, {"vocab_size", mi.vocab_size()},
                                      {"workers_healthy", mi.workers_healthy()}, {"workers_total", mi.workers_total()}}}});
        return (void)x.respond(200, kJson, json{{"object", "list"}, {"data", std::move(data)}}.dump());
    }

    json body;
    ApiError err;
    if (!parse_body(m, &body, &err)) return send_error(x, err, dialect);

    if (m.path == "/tokenize") {
        // llama-server: {"content": "..."}; vLLM: {"prompt": "..."} or {"messages": [...]}.
        v1::TokenizeRequest req;
        http::ParsedGenerate pg;
        if (body.contains("messages")) {
            if (!http::parse_chat_request(body, opt_.prefix_stable_default, &pg, &err)) return send_error(x, err, dialect);
            *req.mutable_prompt() = pg.request.prompt();
            // A chat prompt to tokenize ends where the assistant's answer would start (generation prompt).
        } else {
            const json* c = body.contains("content") ? &body["content"] : body.contains("prompt") ? &body["prompt"] : nullptr;
            if (!c || !c->is_string()) return error(400, "'content' (or 'prompt') must be a string, or give 'messages'", "content");
            req.mutable_prompt()->set_text(c->get<std::string>());
        }
        if (body.contains("model") && body["model"].is_string()) req.set_model(body["model"].get<std::string>());
        bool with_pieces = false;
        if (auto wp = body.find("with_pieces"); wp != body.end() && !wp->is_null()) {
            if (!wp->is_boolean()) return error(400, "'with_pieces' must be true or false", "with_pieces");
            with_pieces = wp->get<bool>();
        }
        grpc::ClientContext ctx;
        add_metadata(m, ctx);
        ctx.set_deadline(std::chrono::system_clock::now() + kUnaryDeadline);
        v1::TokenizeResponse r;
        const grpc::Status s = stub_->Tokenize(&ctx, req, &r);
        if (!s.ok()) return send_error(x, from_grpc(s), dialect);
        json ids = std::vector<int32_t>(r.token_ids().begin(), r.token_ids().end());
        json out = {{"tokens", ids}, {"count", r.token_ids_size()}};
        if (with_pieces) {
            json pieces = json::array();
            for (int k = 0; k < r.token_ids_size(); ++k)
                pieces.push_back({{"id", r.token_ids(k)}, {"piece", k < r.tokens_size() ? r.tokens(k) : ""}});
            out["tokens"] = std::move(pieces);
        }
        return (void)x.respond(200, kJson, out.dump(-1, ' ', false, json::error_handler_t::replace));
    }
    if (m.path == "/detokenize") {
        v1::DetokenizeRequest req;
        const json& t = body.contains("tokens") ? body["tokens"] : json();
        if (!t.is_array()) return error(400, "'tokens' must be an array of token ids", "tokens");
        for (const auto& id : t) {
            if (!id.is_number_integer()) return error(400, "'tokens' must be an array of token ids", "tokens");
            req.add_token_ids(id.get<int32_t>());
        }
        if (body.contains("model") && body["model"].is_string()) req.set_model(body["model"].get<std::string>());
        if (auto ss = body.find("skip_special_tokens"); ss != body.end() && !ss->is_null()) {
            if (!ss->is_boolean()) return error(400, "'skip_special_tokens' must be true or false", "skip_special_tokens");
            req.set_skip_special(ss->get<bool>());
        }
        grpc::ClientContext ctx;
        add_metadata(m, ctx);
        ctx.set_deadline(std::chrono::system_clock::now() + kUnaryDeadline);
        v1::DetokenizeResponse r;
        const grpc::Status s = stub_->Detokenize(&ctx, req, &r);
        if (!s.ok()) return send_error(x, from_grpc(s), dialect);
        return (void)x.respond(200, kJson, json{{"content", r.text()}, {"prompt", r.text()}}.dump(-1, ' ', false,
                                                                                           json::error_handler_t::replace));
    }

    // The generation routes. Refusals the gRPC service never sees are counted here, as it would count them.
    auto refuse = [&](const ApiError& e) {
        const int code = e.status == 503 ? 14 : e.status == 401 ? 16 : 3;  // UNAVAILABLE, UNAUTHENTICATED, INVALID_ARGUMENT
        front_.metrics().request_done("Generate", code, "http");
        send_error(x, e, dialect);
    };
    std::string model;
    if (!model_name(front_, &model, &err)) return refuse(err);
    const tok::Tokenizer* tok = front_.tokenizer();
    if (anthropic) {
        http::ParsedMessages pm;
        if (!http::parse_messages_request(body, opt_.prefix_stable_default, &pm, &err)) return refuse(err);
        http::AnthropicEncoder enc(pm, model);
        StreamEncoder se;
        se.frames = [&](const v1::GenerateResponse& r) { return enc.stream_frames(r); };
        se.end = [&] { return enc.stream_end(); };
        se.error_frames = [&](const ApiError& e) { return enc.error_frame(e); };
        se.add = [&](const v1::GenerateResponse& r) { enc.add(r); };
        se.body = [&] { return enc.whole_body(); };
        return run_generate(*this, *stub_, m, x, pm.request, pm.stream, se, dialect);
    }
    http::ParsedGenerate pg;
    const bool chat = m.path == "/v1/chat/completions";
    if (!(chat ? http::parse_chat_request(body, opt_.prefix_stable_default, &pg, &err)
               : http::parse_completion_request(body, &pg, &err)))
        return refuse(err);
    http::OpenAIEncoder enc(pg, tok, model);
    StreamEncoder se;
    se.frames = [&](const v1::GenerateResponse& r) { return enc.stream_frames(r); };
    se.end = [&] { return enc.stream_end(); };
    se.error_frames = [&](const ApiError& e) { return "data: " + http::openai_error_body(e) + "\n\n"; };
    se.add = [&](const v1::GenerateResponse& r) { enc.add(r); };
    se.body = [&] { return enc.whole_body(); };
    run_generate(*this, *stub_, m, x, pg.request, pg.stream, se, dialect);
}

}  // namespace dg::front
