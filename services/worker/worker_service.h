// deltagate.worker.v1.Worker on the gRPC callback API: thin handlers that hand the work to WorkerCore
// (Generate, Abort), the LoadHub (WatchLoad), or answer from startup facts (GetInfo). With a shared token
// configured, every handler first checks the call's bearer token and refuses it with UNAUTHENTICATED
// (docs/reliability.md "Worker authentication"); a new method must do the same (tests/unit/worker's
// WorkerAuth.EveryMethodRefusesWithoutToken calls every method of the service descriptor).
#pragma once

#include <mutex>

#include "deltagate/worker/v1/worker.grpc.pb.h"
#include "services/worker/worker_core.h"

namespace dg::worker {

class WorkerService final : public deltagate::worker::v1::Worker::CallbackService {
public:
    // `auth_token` empty: every call is served (open worker).
    WorkerService(WorkerCore& core, deltagate::worker::v1::WorkerInfo info, int32_t default_watch_interval_ms,
                  std::string auth_token)
        : core_(core), info_(std::move(info)), default_watch_ms_(default_watch_interval_ms),
          auth_token_(std::move(auth_token)) {}

    grpc::ServerWriteReactor<deltagate::worker::v1::GenerateEvent>* Generate(
        grpc::CallbackServerContext* ctx, const deltagate::worker::v1::GenerateRequest* req) override;
    grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* ctx, const deltagate::worker::v1::AbortRequest* req,
                                    deltagate::worker::v1::AbortResponse* resp) override;
    grpc::ServerUnaryReactor* GetInfo(grpc::CallbackServerContext* ctx, const deltagate::worker::v1::GetInfoRequest* req,
                                      deltagate::worker::v1::WorkerInfo* resp) override;
    grpc::ServerWriteReactor<deltagate::worker::v1::LoadReport>* WatchLoad(
        grpc::CallbackServerContext* ctx, const deltagate::worker::v1::WatchLoadRequest* req) override;

    // The bound address is known only after the server started.
    void set_worker_id(const std::string& id) {
        std::lock_guard lock(mu_);
        info_.set_worker_id(id);
    }

private:
    WorkerCore& core_;
    std::mutex mu_;
    deltagate::worker::v1::WorkerInfo info_;
    const int32_t default_watch_ms_;
    const std::string auth_token_;
};

}  // namespace dg::worker
