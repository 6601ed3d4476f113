#include "services/front/front_server.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"

namespace dg::front {
namespace {

absl::StatusOr<std::string> read_file(const std::string& path, const char* what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat(what, " '", path, "' cannot be read"));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<FrontServer>> FrontServer::start(FrontOptions opt) {
    std::unique_ptr<tok::Tokenizer> tokenizer;
    if (!opt.tokenizer_path.empty()) {
        auto t = tok::load_tokenizer(opt.tokenizer_path);
        if (!t.ok()) return t.status();
        tokenizer = std::move(*t);
    }
    auto tcfg = trace::tracer_config_from_env("deltagate-front");
    if (!tcfg.ok()) return tcfg.status();
    auto pool = WorkerPool::start(opt.pool);
    if (!pool.ok()) return pool.status();

    std::unique_ptr<FrontServer> fs(new FrontServer());
    fs->state_ = std::make_unique<FrontState>(opt, std::move(*pool), std::move(tokenizer),
                                              std::make_unique<trace::Tracer>(*tcfg));
    fs->service_ = std::make_unique<InferenceService>(*fs->state_);

    std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
    if (!opt.tls_cert.empty() || !opt.tls_key.empty()) {
        if (opt.tls_cert.empty() || opt.tls_key.empty())
            return absl::InvalidArgumentError("TLS needs both --tls-cert and --tls-key");
        auto cert = read_file(opt.tls_cert, "--tls-cert");
        if (!cert.ok()) return cert.status();
        auto key = read_file(opt.tls_key, "--tls-key");
        if (!key.ok()) return key.status();
        grpc::SslServerCredentialsOptions ssl;
        ssl.pem_key_cert_pairs.push_back({*key, *cert});
        creds = grpc::SslServerCredentials(ssl);
    }
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder b;
    b.AddListeningPort(opt.listen, creds, &fs->port_);
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);  // a taken port is an error, not a silent share
    b.RegisterService(fs->service_.get());
    b.SetMaxReceiveMessageSize(int(opt.limits.max_message_bytes));
    b.SetMaxSendMessageSize(64 << 20);
    fs->server_ = b.BuildAndStart();
    if (!fs->server_ || fs->port_ == 0)
        return absl::UnavailableError(absl::StrCat("cannot listen on ", opt.listen, " (address in use or not local?)"));
    if (!opt.health_listen.empty()) {
        // No services registered: the builder adds only the default health service (and reflection).
        grpc::ServerBuilder hb;
        hb.AddListeningPort(opt.health_listen, grpc::InsecureServerCredentials(), &fs->health_port_);
        hb.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
        fs->health_server_ = hb.BuildAndStart();
        if (!fs->health_server_ || fs->health_port_ == 0)
            return absl::UnavailableError(absl::StrCat("cannot listen on --health-listen ", opt.health_listen,
                                                       " (address in use or not local?)"));
    }
    if (!opt.metrics_listen.empty()) {
        auto& reg = fs->state_->registry();
        auto http = HttpServer::start(opt.metrics_listen, [&reg](const HttpRequest& r) {
            if (r.path == "/metrics") return HttpResponse{200, metrics::kContentType, reg.render()};
            return HttpResponse{404, "text/plain; charset=utf-8", "not found: try /metrics\n"};
        });
        if (!http.ok()) return http.status();
        fs->http_ = std::move(*http);
    }
    if (!opt.http_listen.empty()) {
        // The HTTP API calls this server's own Inference service in-process: one request path.
        grpc::ChannelArguments args;
        args.SetMaxReceiveMessageSize(-1);
        args.SetMaxSendMessageSize(-1);
        auto gw = HttpGateway::start({.listen = opt.http_listen,
                                      .cors_origins = opt.http_cors_origins,
                                      .prefix_stable_default = opt.http_prefix_stable},
                                     *fs->state_, fs->server_->InProcessChannel(args));
        if (!gw.ok()) return gw.status();
        fs->http_api_ = std::move(*gw);
    }
    fs->health_ = std::thread([raw = fs.get()] { raw->health_loop(); });
    return fs;
}

// SERVING while at least one worker is healthy (readiness: a front with no worker cannot serve).
void FrontServer::health_loop() {
    std::vector<grpc::HealthCheckServiceInterface*> services = {server_->GetHealthCheckService()};
    if (health_server_) services.push_back(health_server_->GetHealthCheckService());
    int last = -1;
    std::unique_lock<std::mutex> l(mu_);
    while (!stopping_) {
        const int serving = state_->pool().healthy_count() > 0;
        if (serving != last) {
            for (auto* hc : services) {
                hc->SetServingStatus(serving != 0);
                hc->SetServingStatus("deltagate.v1.Inference", serving != 0);
            }
            last = serving;
        }
        cv_.wait_for(l, std::chrono::milliseconds(100), [&] { return stopping_; });
    }
}

void FrontServer::shutdown(int grace_ms) {
    {
        std::lock_guard<std::mutex> l(mu_);
        if (stopping_) return;
        stopping_ = true;
    }
    cv_.notify_all();
    if (health_.joinable()) health_.join();
    const auto grace = std::chrono::milliseconds(grace_ms);
    const auto steady_end = std::chrono::steady_clock::now() + grace;
    const auto end = std::chrono::system_clock::now() + grace;
    if (server_) {  // null when start() failed before the server ran (bad TLS files, port in use)
        server_->GetHealthCheckService()->Shutdown();
        if (health_server_) {
            health_server_->GetHealthCheckService()->Shutdown();
            health_server_->Shutdown(std::chrono::system_clock::now());
        }
    }
    // HTTP first: its requests are calls on the in-process channel, which must all be over before the gRPC
    // server shuts down (http_gateway.h). Both share the one grace period.
    if (http_api_) http_api_->drain(steady_end);
    if (server_) server_->Shutdown(end);
    if (http_api_) http_api_->stop();
    if (http_) http_->stop();
}

void FrontServer::wait() { server_->Wait(); }

FrontServer::~FrontServer() {
    shutdown(0);
    if (server_) server_->Wait();
    if (state_) wait_for_calls_to_end();
}

// Wait() returns once every server call is over, but a call the shutdown cancelled still has its worker
// calls ending on gRPC's threads: each holds its GenerateCall, which refers to state_ (and the call is
// destroyed, `inflight` decremented, when the last of them is done). They were cancelled, so this is short;
// it has no time limit because going on would free state_ under them.
void FrontServer::wait_for_calls_to_end() {
    const auto start = std::chrono::steady_clock::now();
    bool told = false;
    while (state_->inflight.load() > 0) {
        if (!told && std::chrono::steady_clock::now() - start > std::chrono::seconds(5)) {
            std::fprintf(stderr, "front: waiting for %d cancelled calls' worker calls to end\n", state_->inflight.load());
            told = true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

}  // namespace dg::front
