// The worker's request registry on top of the engine thread: turns Generate calls into scheduler
// requests and scheduler events into stream messages, handles Abort and cancellation, bounds the
// admission queue, drains, and publishes the load digest (WatchLoad, /metrics gauges).
//
// Thread model: public methods are called from gRPC threads and never block (they post to the
// engine thread), except drain() and the test hooks. Everything under "engine thread only" is touched
// only by tasks and event callbacks running on the engine thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "deltagate/worker/v1/worker.grpc.pb.h"
#include "services/common/metrics.h"
#include "services/common/retry_after.h"
#include "services/common/tracer.h"
#include "services/worker/engine_thread.h"
#include "services/worker/generate_stream.h"
#include "services/worker/load_hub.h"
#include "services/worker/request_spans.h"
#include "services/worker/worker_metrics.h"
#include "services/worker/worker_options.h"

namespace dg::worker {

// What a Generate call's metadata says beyond the request message.
struct CallMeta {
    std::string traceparent;        // W3C; the front's worker-call span
    std::string tracestate;
    std::string public_request_id;  // x-deltagate-request-id
    grpc::CallbackServerContext* server_ctx = nullptr;  // where a rejection's retry-after hint goes (may be null)
};


class WorkerCore {
public:
    // `tracer` (may be null: no spans) must outlive the core.
    WorkerCore(const WorkerOptions& opt, std::unique_ptr<sched::EngineLoop> loop, metrics::Registry& registry,
               trace::Tracer* tracer = nullptr);
    ~WorkerCore();  // stops the engine thread: shut the gRPC server down first

    // Starts one Generate call; the returned reactor belongs to gRPC.
    grpc::ServerWriteReactor<deltagate::worker::v1::GenerateEvent>* generate(
        const deltagate::worker::v1::GenerateRequest& req, std::optional<sched::Clock::time_point> deadline,
        const CallMeta& meta = {});
    // Cancels the named requests (by request id, by the front's public id, or single continuations);
    // `done` runs on the engine thread once resp is filled.
    void abort(const deltagate::worker::v1::AbortRequest& req, deltagate::worker::v1::AbortResponse* resp,
               std::function<void()> done);

    LoadHub& load_hub() { return hub_; }
    void set_worker_id(std::string id);  // reported in every LoadReport from now on
    int32_t max_seq_len() const { return max_seq_len_; }

    // Refuse new requests (UNAVAILABLE) from now on and publish draining = true.
    void start_draining();
    bool draining() const { return draining_.load(); }
    // Called once, on the engine thread, when the backend reports its device lost (a sticky CUDA
    // error): the worker then refuses new requests like a draining one and its health turns NOT_SERVING.
    void set_on_device_lost(std::function<void()> f) {
        std::lock_guard<std::mutex> l(device_lost_mu_);
        on_device_lost_ = std::move(f);
    }
    // Blocks until no request is in flight.
    void wait_idle();
    // Blocks until no request is in flight or `timeout` passes; true when idle.
    bool wait_idle_for(std::chrono::milliseconds timeout);
    // Ends every running request with UNAVAILABLE ("handed off"): the front migrates each one to another
    // worker with the tokens it already streamed (docs/reliability.md). The end of a drain.
    void hand_off_all();
    int32_t in_flight() const { return n_live_.load(); }

    // Test hooks.
    EngineThread& engine() { return *engine_; }

private:
    struct Live {
        sched::RequestId rid = 0;
        std::shared_ptr<GenerateStream> stream;
        std::string name;
        std::string public_id;
        std::optional<RequestTrace> trace;  // set when this request is sampled
        bool aborted = false;
        bool handed_off = false;  // ended by hand_off_all(): UNAVAILABLE, so the front migrates it
        std::set<int32_t> aborted_continuations;  // ended by Abort(continuations): not a request failure
        bool first_token = false;
        sched::Clock::time_point start;
        std::map<int32_t, sched::Clock::time_point> last_token;  // per continuation
        grpc::Status error;
    };

    // Ends a call that never reached the engine; `retry_after_ms` > 0 goes out as the overload hint.
    void reject(const std::shared_ptr<GenerateStream>& s, const grpc::Status& st, int64_t retry_after_ms = 0);
    void request_ended();  // n_live_ - 1, waking wait_idle()
    // Engine thread only.
    void submit(uint64_t sid, std::shared_ptr<GenerateStream> stream, sched::Request r, Live live,
                sched::EngineLoop& loop);
    // Whether to trace this call, and under which parent.
    std::optional<RequestTrace> start_trace(const deltagate::worker::v1::GenerateRequest& req, const CallMeta& meta) const;
    void end_trace(const Live& L, const sched::Usage& u, const grpc::Status& st);
    void on_event(uint64_t sid, const sched::Event& e);
    void cancel_stream(uint64_t sid, sched::EngineLoop& loop);
    void after_work(sched::EngineLoop& loop);

    WorkerOptions opt_;
    trace::Tracer* tracer_;
    int32_t max_seq_len_;
    WorkerMetrics metrics_;
    LoadHub hub_;
    std::atomic<bool> draining_{false};
    bool device_lost_ = false;  // engine thread only
    std::mutex device_lost_mu_;  // guards on_device_lost_ (set after the engine thread starts)
    std::function<void()> on_device_lost_;
    std::atomic<uint64_t> next_stream_{1};
    std::atomic<int32_t> n_live_{0};
    std::mutex idle_mu_;
    std::condition_variable idle_cv_;

    // Engine thread only.
    std::map<uint64_t, Live> live_;
    std::map<std::string, uint64_t> by_name_;
    std::multimap<std::string, uint64_t> by_public_;  // front request id -> its legs here
    sched::Clock::time_point last_publish_{};
    RetryAfterEstimate retry_after_;  // from finished requests' durations

    std::unique_ptr<EngineThread> engine_;  // last: its thread stops first
};

}  // namespace dg::worker
