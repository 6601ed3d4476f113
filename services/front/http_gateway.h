// The front's HTTP API (docs/front.md "HTTP API"): OpenAI-compatible /v1/chat/completions, /v1/completions,
// /v1/models, Anthropic's /v1/messages, /health, /tokenize, /detokenize and /version, on its own port
// (--http-listen).
//
// One request path, two encodings: an HTTP request is translated into the deltagate.v1 request a gRPC
// client would send and made to this front's own Inference service over an in-process channel, so it goes
// through exactly the same admission, limits, routing, session affinity, caching, tracing (the HTTP
// traceparent is passed on as gRPC metadata) and metrics (protocol="http"). Closing the HTTP connection
// cancels that call, which cancels the worker request (its KV blocks and state slot are freed at once).
//
// Shutdown order: the in-process channel must never carry a call to a gRPC server that has shut down
// (gRPC 1.51's in-process transport then calls a null stream initialiser), so the front drains HTTP
// first (drain: refuse new requests, let running ones finish until the deadline, then cancel them and
// wait) and shuts its gRPC server down only after; stop() then joins the connection threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "services/common/http_conn_server.h"
#include "services/front/front_state.h"
#include "services/front/protos.h"
#include "deltagate/v1/inference.grpc.pb.h"

namespace dg::front {

struct HttpGatewayOptions {
    std::string listen;                       // host:port
    std::vector<std::string> cors_origins;    // empty: no CORS headers; "*" allows any origin
    bool prefix_stable_default = true;        // multi-turn chat rendering unless a request says otherwise
};

class HttpGateway {
public:
    // `channel`: an in-process channel to this front's gRPC server.
    static absl::StatusOr<std::unique_ptr<HttpGateway>> start(HttpGatewayOptions opt, FrontState& front,
                                                              std::shared_ptr<grpc::Channel> channel);
    ~HttpGateway();
    // No new connection or request from now on (503 "shutting down"); requests running at `deadline` are
    // cancelled; returns when no handler is left inside the in-process channel.
    void drain(std::chrono::steady_clock::time_point deadline);
    void stop();
    std::string address() const { return server_->address(); }

    // A running Generate call, cancellable by drain() (http_gateway.cpp).
    class Stream {
    public:
        virtual ~Stream() = default;
        virtual void cancel() = 0;
    };
    // Handlers register their Generate calls for drain(); false once draining (refuse the request).
    bool track(const std::shared_ptr<Stream>& s);
    void untrack(const std::shared_ptr<Stream>& s);

private:
    HttpGateway(HttpGatewayOptions opt, FrontState& front, std::shared_ptr<grpc::Channel> channel);
    void handle(const HttpMessage& m, HttpExchange& x);
    bool enter();  // a handler starts; false once draining
    void leave();

    HttpGatewayOptions opt_;
    FrontState& front_;
    std::shared_ptr<grpc::Channel> channel_;
    std::unique_ptr<v1::Inference::Stub> stub_;
    std::unique_ptr<HttpConnServer> server_;

    std::mutex gate_mu_;
    std::condition_variable gate_cv_;
    bool draining_ = false;
    int active_ = 0;                               // handlers running
    std::set<std::shared_ptr<Stream>> streams_;    // Generate calls running
};

}  // namespace dg::front
