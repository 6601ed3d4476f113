// The workers a front routes to: a static list or a DNS name re-resolved periodically (a Kubernetes
// headless Service gives one A record per ready pod). Each worker has one channel and a watcher thread
// that fetches its info and then follows its WatchLoad stream; the stream doubles as the health check:
// while it is open (and the worker is not draining) the worker is healthy, when it breaks the worker is
// out until a new GetInfo + WatchLoad succeeds. With a shared worker token, the channel attaches it to
// every call (services/common/bearer_token.h), so every stub use here and in generate_call.cpp sends it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "services/front/protos.h"
#include "deltagate/worker/v1/worker.grpc.pb.h"
#include "services/front/router.h"

namespace dg::front {

struct WorkerPoolOptions {
    std::vector<std::string> static_workers;  // host:port
    std::string dns_name;                     // host:port re-resolved every dns_refresh_ms (instead of the list)
    int dns_refresh_ms = 5000;
    int watch_interval_ms = 200;              // WatchLoad interval asked of the workers
    int retry_ms = 500;                       // reconnect period of an unhealthy worker
    // HTTP/2 keepalive pings to each worker (--worker-keepalive-ms): a worker that stops answering them
    // (hung, frozen, its host gone without a reset) loses its connection after twice this, so its streams
    // end with UNAVAILABLE and migrate (docs/reliability.md). 0 = off.
    int keepalive_ms = 10000;
    std::string auth_token;                   // sent as "authorization: Bearer <token>" on every worker call; empty = none
};

// One worker as seen by this front. Fields under mu.
class WorkerHandle {
public:
    WorkerHandle(std::string address, int watch_interval_ms, int retry_ms, int keepalive_ms,
                 const std::string& auth_token);
    ~WorkerHandle();  // stops the watcher

    const std::string& address() const { return address_; }
    worker::v1::Worker::Stub& stub() { return *stub_; }

    bool healthy() const;
    std::optional<worker::v1::WorkerInfo> info() const;
    // A copy of what routing needs (digest shared, not copied).
    WorkerView view(int id) const;
    // A request failed with UNAVAILABLE: out until the watcher reconnects.
    void mark_failed();
    std::atomic<int32_t> inflight{0};

private:
    void watch();

    std::string address_;
    int watch_interval_ms_, retry_ms_;
    std::shared_ptr<grpc::Channel> channel_;
    std::unique_ptr<worker::v1::Worker::Stub> stub_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    grpc::ClientContext* watch_ctx_ = nullptr;  // to cancel the stream on stop / mark_failed
    bool healthy_ = false;
    std::optional<worker::v1::WorkerInfo> info_;
    worker::v1::LoadReport load_;
    std::shared_ptr<const CheckpointDigest> digest_ = std::make_shared<CheckpointDigest>();
    std::thread thread_;
};

class WorkerPool {
public:
    static absl::StatusOr<std::unique_ptr<WorkerPool>> start(WorkerPoolOptions opt);
    ~WorkerPool();

    // The current workers (stable objects; a worker dropped by DNS stays alive while requests hold it).
    std::vector<std::shared_ptr<WorkerHandle>> workers() const;
    int healthy_count() const;
    // The first healthy worker's info (model, limits), if any.
    std::optional<worker::v1::WorkerInfo> any_info() const;
    // Blocks until `n` workers are healthy or the timeout passes; returns the count reached.
    int wait_healthy(int n, int timeout_ms) const;

private:
    WorkerPool() = default;
    void set_addresses(const std::vector<std::string>& addrs);
    void resolve_loop();

    WorkerPoolOptions opt_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::vector<std::shared_ptr<WorkerHandle>> workers_;
    std::thread resolver_;
};

// Sends one Abort to the worker without waiting; `done` (may be empty) runs on a gRPC thread with the
// call's status and response. The handle is kept alive until then.
void abort_async(std::shared_ptr<WorkerHandle> worker, worker::v1::AbortRequest req, int timeout_ms,
                 std::function<void(const grpc::Status&, const worker::v1::AbortResponse&)> done);

// "host:port" -> the "ip:port" of every address the name resolves to (IPv4 and IPv6), sorted.
absl::StatusOr<std::vector<std::string>> resolve_all(const std::string& host_port);

}  // namespace dg::front
