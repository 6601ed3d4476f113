#include "services/front/worker_pool.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>

#include "absl/strings/str_cat.h"
#include "services/common/bearer_token.h"

namespace dg::front {

using namespace std::chrono_literals;

WorkerHandle::WorkerHandle(std::string address, int watch_interval_ms, int retry_ms, int keepalive_ms,
                           const std::string& auth_token)
    : address_(std::move(address)), watch_interval_ms_(watch_interval_ms), retry_ms_(retry_ms) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    // Reconnect fast after a worker restart; the default backoff grows to two minutes.
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
    if (keepalive_ms > 0) {
        // The worker's server accepts pings this often (worker_server.cpp), so no GOAWAY "too_many_pings".
        args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, keepalive_ms);
        args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, keepalive_ms);
        args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
        args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    }
    channel_ = auth::channel_with_token(address_, grpc::InsecureChannelCredentials(), args, auth_token);
    stub_ = worker::v1::Worker::NewStub(channel_);
    thread_ = std::thread([this] { watch(); });
}

WorkerHandle::~WorkerHandle() {
    {
        std::lock_guard<std::mutex> l(mu_);
        stopping_ = true;
        if (watch_ctx_) watch_ctx_->TryCancel();
    }
    cv_.notify_all();
    thread_.join();
}

bool WorkerHandle::healthy() const {
    std::lock_guard<std::mutex> l(mu_);
    return healthy_ && !load_.draining();
}

std::optional<worker::v1::WorkerInfo> WorkerHandle::info() const {
    std::lock_guard<std::mutex> l(mu_);
    return info_;
}

WorkerView WorkerHandle::view(int id) const {
    std::lock_guard<std::mutex> l(mu_);
    WorkerView v;
    v.id = id;
    v.healthy = healthy_;
    v.draining = load_.draining();
    v.block_tokens = info_ && info_->kv_block_tokens() > 0 ? info_->kv_block_tokens() : 16;
    v.running = load_.running();
    v.waiting = load_.waiting();
    v.inflight = inflight.load();
    v.digest = digest_;
    return v;
}

void WorkerHandle::mark_failed() {
    std::lock_guard<std::mutex> l(mu_);
    healthy_ = false;
    if (watch_ctx_) watch_ctx_->TryCancel();
}

void WorkerHandle::watch() {
    bool logged_down = false;
    while (true) {
        {
            std::unique_lock<std::mutex> l(mu_);
            if (stopping_) return;
        }
        grpc::ClientContext info_ctx;
        info_ctx.set_deadline(std::chrono::system_clock::now() + 2s);
        worker::v1::WorkerInfo info;
        grpc::Status s = stub_->GetInfo(&info_ctx, worker::v1::GetInfoRequest(), &info);
        if (s.ok()) {
            grpc::ClientContext ctx;
            worker::v1::WatchLoadRequest req;
            req.set_interval_ms(watch_interval_ms_);
            {
                std::lock_guard<std::mutex> l(mu_);
                if (stopping_) return;
                info_ = info;
                watch_ctx_ = &ctx;
            }
            auto reader = stub_->WatchLoad(&ctx, req);
            worker::v1::LoadReport report;
            while (reader->Read(&report)) {
                auto digest = std::make_shared<CheckpointDigest>();
                for (const auto& c : report.checkpoints()) (*digest)[c.key()] = c.position();
                std::lock_guard<std::mutex> l(mu_);
                if (!healthy_ && logged_down) std::fprintf(stderr, "front: worker %s is back\n", address_.c_str());
                healthy_ = true;
                logged_down = false;
                load_ = std::move(report);
                load_.clear_checkpoints();
                digest_ = std::move(digest);
            }
            s = reader->Finish();
            std::lock_guard<std::mutex> l(mu_);
            watch_ctx_ = nullptr;
        }
        std::unique_lock<std::mutex> l(mu_);
        if (stopping_) return;
        if (!logged_down) {
            std::fprintf(stderr, "front: worker %s unavailable: %s\n", address_.c_str(), s.error_message().c_str());
            logged_down = true;
        }
        healthy_ = false;
        cv_.wait_for(l, std::chrono::milliseconds(retry_ms_), [&] { return stopping_; });
    }
}

absl::StatusOr<std::vector<std::string>> resolve_all(const std::string& host_port) {
    const size_t colon = host_port.rfind(':');
    if (colon == std::string::npos || colon == 0)
        return absl::InvalidArgumentError(absl::StrCat("'", host_port, "' is not host:port"));
    const std::string host = host_port.substr(0, colon), port = host_port.substr(colon + 1);
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
        return absl::UnavailableError(absl::StrCat("resolve ", host, ": ", gai_strerror(rc)));
    std::set<std::string> out;
    for (addrinfo* a = res; a; a = a->ai_next) {
        char buf[INET6_ADDRSTRLEN] = {};
        if (a->ai_family == AF_INET) {
            ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, buf, sizeof(buf));
            out.insert(absl::StrCat(buf, ":", port));
        } else if (a->ai_family == AF_INET6) {
            ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, buf, sizeof(buf));
            out.insert(absl::StrCat("[", buf, "]:", port));
        }
    }
    ::freeaddrinfo(res);
    return std::vector<std::string>(out.begin(), out.end());
}

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::start(WorkerPoolOptions opt) {
    if (opt.static_workers.empty() == opt.dns_name.empty())
        return absl::InvalidArgumentError("give either --workers host:port,... or --workers-dns name:port");
    std::unique_ptr<WorkerPool> p(new WorkerPool());
    p->opt_ = std::move(opt);
    if (!p->opt_.dns_name.empty()) {
        auto first = resolve_all(p->opt_.dns_name);
        if (first.ok()) p->set_addresses(*first);  // a name with no ready pods yet is fine: keep resolving
        p->resolver_ = std::thread([raw = p.get()] { raw->resolve_loop(); });
    } else {
        p->set_addresses(p->opt_.static_workers);
    }
    return p;
}

WorkerPool::~WorkerPool() {
    {
        std::lock_guard<std::mutex> l(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (resolver_.joinable()) resolver_.join();
    std::vector<std::shared_ptr<WorkerHandle>> drop;
    {
        std::lock_guard<std::mutex> l(mu_);
        drop.swap(workers_);
    }
}

void WorkerPool::set_addresses(const std::vector<std::string>& addrs) {
    std::vector<std::shared_ptr<WorkerHandle>> keep, gone;
    {
        std::lock_guard<std::mutex> l(mu_);
        for (const auto& a : addrs) {
            auto it = std::find_if(workers_.begin(), workers_.end(), [&](auto& w) { return w->address() == a; });
            keep.push_back(it != workers_.end() ? *it
                                                : std::make_shared<WorkerHandle>(a, opt_.watch_interval_ms, opt_.retry_ms,
                                                                                 opt_.keepalive_ms, opt_.auth_token));
        }
        for (auto& w : workers_)
            if (std::find(keep.begin(), keep.end(), w) == keep.end()) gone.push_back(w);
        workers_ = keep;
    }
    // `gone` is released here, outside the lock (its destructor joins the watcher).
}

void WorkerPool::resolve_loop() {
    while (true) {
        {
            std::unique_lock<std::mutex> l(mu_);
            cv_.wait_for(l, std::chrono::milliseconds(opt_.dns_refresh_ms), [&] { return stopping_; });
            if (stopping_) return;
        }
        // A failed lookup keeps the last set: DNS hiccups must not empty the pool.
        if (auto addrs = resolve_all(opt_.dns_name); addrs.ok() && !addrs->empty()) set_addresses(*addrs);
    }
}

std::vector<std::shared_ptr<WorkerHandle>> WorkerPool::workers() const {
    std::lock_guard<std::mutex> l(mu_);
    return workers_;
}

int WorkerPool::healthy_count() const {
    int n = 0;
    for (auto& w : workers()) n += w->healthy();
    return n;
}

std::optional<worker::v1::WorkerInfo> WorkerPool::any_info() const {
    for (auto& w : workers())
        if (auto i = w->info()) return i;
    return std::nullopt;
}

int WorkerPool::wait_healthy(int n, int timeout_ms) const {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
        const int h = healthy_count();
        if (h >= n || std::chrono::steady_clock::now() >= until) return h;
        std::this_thread::sleep_for(50ms);
    }
}

void abort_async(std::shared_ptr<WorkerHandle> worker, worker::v1::AbortRequest req, int timeout_ms,
                 std::function<void(const grpc::Status&, const worker::v1::AbortResponse&)> done) {
    struct Call {
        std::shared_ptr<WorkerHandle> worker;
        grpc::ClientContext ctx;
        worker::v1::AbortRequest req;
        worker::v1::AbortResponse resp;
        std::function<void(const grpc::Status&, const worker::v1::AbortResponse&)> done;
    };
    auto* c = new Call{std::move(worker), {}, std::move(req), {}, std::move(done)};
    c->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
    c->worker->stub().async()->Abort(&c->ctx, &c->req, &c->resp, [c](grpc::Status st) {
        if (c->done) c->done(st, c->resp);
        delete c;
    });
}

}  // namespace dg::front
