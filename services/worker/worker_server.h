// One worker process's servers: the gRPC server (deltagate.worker.v1.Worker, grpc.health.v1,
// reflection) over a WorkerCore, and the /metrics HTTP server. `deltagate worker` and the in-process
// tests both use this.
//
//     auto w = WorkerServer::start(opt);          // loads the model, listens
//     std::printf("%s\n", (*w)->address().c_str());
//     ... SIGTERM ...
//     (*w)->drain();                              // refuse new, finish in-flight, stop
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "services/common/http_server.h"
#include "services/common/metrics.h"
#include "services/common/tracer.h"
#include "services/worker/worker_core.h"
#include "services/worker/worker_options.h"
#include "services/worker/worker_service.h"

namespace dg::worker {

class WorkerServer {
public:
    static absl::StatusOr<std::unique_ptr<WorkerServer>> start(WorkerOptions opt);
    ~WorkerServer();  // shutdown()

    std::string address() const { return address_; }    // host:port actually bound
    int port() const { return port_; }
    std::string metrics_address() const { return http_ ? http_->address() : std::string(); }

    // SIGTERM: health NOT_SERVING, new requests UNAVAILABLE, wait for in-flight ones, then shutdown().
    void drain();
    // Stops at once: in-flight calls are cancelled (their resources freed), watchers ended.
    void shutdown();
    // Blocks until shutdown() (from another thread).
    void wait() { server_->Wait(); }

    WorkerCore& core() { return *core_; }
    metrics::Registry& registry() { return *registry_; }

private:
    WorkerServer() = default;

    WorkerOptions opt_;
    std::string address_;
    int port_ = 0;
    std::unique_ptr<metrics::Registry> registry_;
    std::unique_ptr<trace::Tracer> tracer_;  // before core_: outlives it
    std::unique_ptr<WorkerCore> core_;
    std::unique_ptr<WorkerService> service_;
    std::unique_ptr<grpc::Server> server_;
    std::unique_ptr<HttpServer> http_;
    std::mutex shutdown_mu_;
    bool shut_down_ = false;
};

// The health service name the worker reports besides "" (overall).
inline constexpr const char* kWorkerServiceName = "deltagate.worker.v1.Worker";

}  // namespace dg::worker
