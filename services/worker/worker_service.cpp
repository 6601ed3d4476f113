#include "services/worker/worker_service.h"

#include <algorithm>
#include <chrono>

#include "services/common/bearer_token.h"
#include "services/common/grpc_metadata.h"
#include "services/common/queued_writer.h"

namespace dg::worker {

namespace pb = ::deltagate::worker::v1;

namespace {

grpc::ServerUnaryReactor* refuse_unary(grpc::CallbackServerContext* ctx, const grpc::Status& st) {
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(st);
    return r;
}

}  // namespace

grpc::ServerWriteReactor<pb::GenerateEvent>* WorkerService::Generate(grpc::CallbackServerContext* ctx,
                                                                     const pb::GenerateRequest* req) {
    if (grpc::Status st = auth::check_bearer(*ctx, auth_token_); !st.ok())
        return RefusedStream<pb::GenerateEvent>::create(st);
    // The gRPC deadline (system clock) becomes a steady-clock hard stop in the scheduler.
    std::optional<sched::Clock::time_point> deadline;
    const auto d = ctx->deadline();
    if (d != std::chrono::system_clock::time_point::max()) {
        const auto left = d - std::chrono::system_clock::now();
        deadline = sched::Clock::now() + std::chrono::duration_cast<sched::Clock::duration>(left);
    }
    CallMeta meta;
    meta.traceparent = client_metadata(ctx, "traceparent");
    meta.tracestate = client_metadata(ctx, "tracestate");
    meta.public_request_id = client_metadata(ctx, "x-deltagate-request-id");
    meta.server_ctx = ctx;
    return core_.generate(*req, deadline, meta);
}

grpc::ServerUnaryReactor* WorkerService::Abort(grpc::CallbackServerContext* ctx, const pb::AbortRequest* req,
                                               pb::AbortResponse* resp) {
    if (grpc::Status st = auth::check_bearer(*ctx, auth_token_); !st.ok()) return refuse_unary(ctx, st);
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    core_.abort(*req, resp, [r] { r->Finish(grpc::Status::OK); });
    return r;
}

grpc::ServerUnaryReactor* WorkerService::GetInfo(grpc::CallbackServerContext* ctx, const pb::GetInfoRequest*,
                                                 pb::WorkerInfo* resp) {
    if (grpc::Status st = auth::check_bearer(*ctx, auth_token_); !st.ok()) return refuse_unary(ctx, st);
    {
        std::lock_guard lock(mu_);
        *resp = info_;
    }
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
}

grpc::ServerWriteReactor<pb::LoadReport>* WorkerService::WatchLoad(grpc::CallbackServerContext* ctx,
                                                                   const pb::WatchLoadRequest* req) {
    if (grpc::Status st = auth::check_bearer(*ctx, auth_token_); !st.ok())
        return RefusedStream<pb::LoadReport>::create(st);
    const int32_t ms = req->interval_ms() > 0 ? std::min(req->interval_ms(), 60'000) : default_watch_ms_;
    return core_.load_hub().watch(std::chrono::milliseconds(ms));
}

}  // namespace dg::worker
