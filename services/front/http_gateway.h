// The front's HTTP API (docs/front.md "HTTP API"): OpenAI-compatible /v1/chat/completions, /v1/completions,
// /v1/models, Anthropic's /v1/messages, /health, /tokenize, /detokenize and /version, on its own port
// (--http-listen).
//
// One request path, two encodings: an HTTP request is translated into the deltagate.v1 request a gRPC
// client would send and made to this front's own Inference service over an in-process channel, so it goes
// through exactly the same admission, limits, routing, session affinity, caching, tracing (the HTTP
// traceparent is passed on as gRPC metadata) and metrics (protocol="http"). Closing the HTTP connection
// cancels that call, which cancels the worker request (its KV blocks and state slot are freed at once).
#pragma once

#include <memory>
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
    void stop();
    std::string address() const { return server_->address(); }

private:
    HttpGateway(HttpGatewayOptions opt, FrontState& front, std::shared_ptr<grpc::Channel> channel);
    void handle(const HttpMessage& m, HttpExchange& x);

    HttpGatewayOptions opt_;
    FrontState& front_;
    std::shared_ptr<grpc::Channel> channel_;
    std::unique_ptr<v1::Inference::Stub> stub_;
    std::unique_ptr<HttpConnServer> server_;
};

}  // namespace dg::front
