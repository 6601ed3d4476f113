// A running front: the gRPC server (deltagate.v1.Inference, grpc.health.v1, reflection), optional TLS,
// the worker pool, the tracer and the /metrics endpoint. `deltagate front` and `deltagate up` use it.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "services/common/http_server.h"
#include "services/front/front_state.h"
#include "services/front/http_gateway.h"
#include "services/front/inference_service.h"

namespace dg::front {

class FrontServer {
public:
    static absl::StatusOr<std::unique_ptr<FrontServer>> start(FrontOptions opt);
    ~FrontServer();

    int port() const { return port_; }
    std::string metrics_address() const { return http_ ? http_->address() : std::string(); }
    int health_port() const { return health_port_; }  // 0: no --health-listen
    std::string http_address() const { return http_api_ ? http_api_->address() : std::string(); }  // --http-listen
    FrontState& state() { return *state_; }
    // Health NOT_SERVING, then stop accepting, give running streams `grace_ms` to finish, stop.
    void shutdown(int grace_ms);
    void wait();

private:
    FrontServer() = default;
    void health_loop();
    void wait_for_calls_to_end();

    std::unique_ptr<FrontState> state_;
    std::unique_ptr<InferenceService> service_;
    std::unique_ptr<grpc::Server> server_;
    std::unique_ptr<grpc::Server> health_server_;  // --health-listen
    std::unique_ptr<HttpServer> http_;
    std::unique_ptr<HttpGateway> http_api_;  // --http-listen
    int port_ = 0, health_port_ = 0;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::thread health_;
};

}  // namespace dg::front
