#include "services/worker/worker_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "engine/status.h"
#include "engine/formats/dtype.h"
#include "engine/weights.h"
#include "services/worker/worker_memory.h"

namespace dg::worker {

namespace pb = ::deltagate::worker::v1;

absl::StatusOr<std::unique_ptr<WorkerServer>> WorkerServer::start(WorkerOptions opt) {
    std::unique_ptr<WorkerServer> w(new WorkerServer());
    // Bad OTEL_* settings fail the start before the model loads (the same rules as the front's).
    DG_ASSIGN_OR_RETURN(trace::TracerConfig tracing, trace::tracer_config_from_env("deltagate-worker"));
    DG_ASSIGN_OR_RETURN(DeviceMemory mem_before, measure_memory(opt));  // memory plan: free before loading
    DG_ASSIGN_OR_RETURN(std::unique_ptr<ModelWeights> weights, load_model(opt.model_path));
    const ModelConfig config = weights->config;
    DG_ASSIGN_OR_RETURN(MemoryPlan mem_plan, plan_worker_memory(*weights, mem_before, &opt));  // sizes opt's pools
    DG_ASSIGN_OR_RETURN(std::unique_ptr<sched::EngineLoop> loop,
                        sched::EngineLoop::create(std::move(weights), opt.backend, opt.cache, opt.sched));

    // Where the weights ended up (the serving CPU backend says whether it got 2 MiB pages).
    std::fprintf(stderr, "worker: %s on %s\n", loop->model().backend().name().c_str(),
                 loop->model().backend().device_name().c_str());

    pb::WorkerInfo info;
    info.set_model_path(opt.model_path);
    info.set_arch(config.arch);
    info.set_vocab_size(int32_t(config.vocab_size));
    info.set_max_seq_len(loop->max_seq_len());
    for (int32_t e : config.eos_ids) info.add_eos_token_ids(e);
    info.set_backend(loop->model().backend().name());
    info.set_device(mem_plan.device_name);
    info.set_kv_type(dtype_info(opt.cache.kv_type).name);
    info.set_kv_block_tokens(opt.cache.block_tokens);
    info.set_kv_blocks(opt.cache.n_blocks);
    info.set_max_running(opt.sched.max_running);
    info.set_host_cache_bytes(opt.sched.host_cache_bytes);
    info.set_max_n(opt.sched.max_n);
    info.set_max_top_logprobs(sched::kMaxTopLogprobs);
    info.set_max_queue(opt.max_queue);

    // Health and reflection are process-wide switches that must be set before the builder runs.
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();

    w->registry_ = std::make_unique<metrics::Registry>();
    report_memory_plan(mem_plan, opt, *w->registry_, &info);
    grpc::ServerBuilder b;
    b.AddListeningPort(opt.listen, grpc::InsecureServerCredentials(), &w->port_);
    // gRPC sets SO_REUSEPORT by default on Linux: a second worker started on a taken port would then share
    // it silently, and the front would reach either. Off, such a start fails with a clear error.
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    // The fronts ping every worker connection (--worker-keepalive-ms, down to 500 ms) to find hung
    // workers: accept that instead of answering GOAWAY "too_many_pings", which would drop live streams.
    b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 400);
    b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    w->opt_ = opt;
    w->tracer_ = std::make_unique<trace::Tracer>(std::move(tracing));
    w->core_ = std::make_unique<WorkerCore>(opt, std::move(loop), *w->registry_, w->tracer_.get());
    w->service_ = std::make_unique<WorkerService>(*w->core_, info, opt.default_watch_interval_ms, opt.auth_token);
    b.RegisterService(w->service_.get());
    w->server_ = b.BuildAndStart();
    if (!w->server_ || w->port_ == 0)
        return absl::UnavailableError(absl::StrCat("worker: cannot listen on ", opt.listen, " (address in use or invalid?)"));
    const std::string host = opt.listen.substr(0, opt.listen.rfind(':'));
    w->address_ = absl::StrCat(host, ":", w->port_);
    const std::string id = opt.worker_id.empty() ? w->address_ : opt.worker_id;
    w->core_->set_worker_id(id);
    w->service_->set_worker_id(id);
    grpc::HealthCheckServiceInterface* health = w->server_->GetHealthCheckService();
    w->core_->set_on_device_lost([health] {
        health->SetServingStatus(false);
        health->SetServingStatus(kWorkerServiceName, false);
    });
    w->server_->GetHealthCheckService()->SetServingStatus(true);
    w->server_->GetHealthCheckService()->SetServingStatus(kWorkerServiceName, true);

    if (!opt.metrics_listen.empty()) {
        DG_ASSIGN_OR_RETURN(w->http_, serve_metrics(opt.metrics_listen, *w->registry_));
    }
    return w;
}

WorkerServer::~WorkerServer() { shutdown(); }

void WorkerServer::drain() {
    if (!server_) return;
    server_->GetHealthCheckService()->SetServingStatus(false);
    core_->start_draining();
    if (!core_->wait_idle_for(std::chrono::milliseconds(opt_.drain_ms))) {
        std::fprintf(stderr, "worker: --drain-ms %d passed with %d request(s) running: handing them off\n", opt_.drain_ms,
                     core_->in_flight());
        core_->hand_off_all();
        core_->wait_idle();
    }
    shutdown();
}

void WorkerServer::shutdown() {
    std::lock_guard lock(shutdown_mu_);
    if (shut_down_ || !server_) return;
    shut_down_ = true;
    server_->GetHealthCheckService()->SetServingStatus(false);
    // Endless streams first (WatchLoad), or Shutdown would wait for them until its deadline.
    core_->load_hub().close_all(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is shutting down"));
    // In-flight Generate calls get a short grace, then are cancelled: their OnCancel posts a cancel to
    // the engine thread, which is still running and frees their blocks and slots.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    if (http_) http_->stop();
    core_.reset();  // stops the engine thread
}

}  // namespace dg::worker
