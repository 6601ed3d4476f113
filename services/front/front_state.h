// What every RPC handler of one front shares: options, the worker pool, the tokenizer, the tracer,
// metrics, session affinity and the running calls (for Abort).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "services/common/metrics.h"
#include "services/front/front_metrics.h"
#include "services/front/request_builder.h"
#include "services/front/router.h"
#include "services/common/retry_after.h"
#include "services/common/tracer.h"
#include "services/front/worker_pool.h"

namespace dg::front {

struct FrontOptions {
    std::string listen = "0.0.0.0:50051";
    std::string metrics_listen;          // host:port for /metrics; empty = none
    // host:port of the OpenAI/Anthropic-compatible HTTP API (http_gateway.h); empty = none.
    std::string http_listen;
    std::vector<std::string> http_cors_origins;  // origins allowed to call the HTTP API from a browser ("*": any)
    bool http_prefix_stable = true;      // HTTP chats render prefix-stable unless a request asks otherwise
    // host:port of a second, always plaintext gRPC server with only grpc.health.v1 (the kubelet's gRPC
    // probe cannot speak TLS); empty = none. Same status as the main port's health service.
    std::string health_listen;
    WorkerPoolOptions pool;
    FrontLimits limits;
    RouteOptions route;
    std::string tokenizer_path;          // tokenizer.json or GGUF; empty = the workers' model file if readable here
    std::string model_name;              // empty = the model file's base name
    std::string tls_cert, tls_key;       // PEM files; both or neither
    std::string auth_token;              // required as "authorization: Bearer <token>" when set
    int max_attempts = 3;                // worker attempts per request before the first token
    // Mid-stream migration (docs/reliability.md): a continuation whose worker fails after it streamed
    // tokens is resubmitted, prompt + the tokens already sent, to another worker, at most this many times
    // per continuation (0 = off: such a stream ends with UNAVAILABLE).
    int max_migrations = 3;
    // Test-only seam (never set by the CLI): runs in ~GenerateCall before it unregisters, so the call
    // lifetime race test can widen the window in which Abort may find a call whose last reference is gone.
    std::function<void()> test_call_deleting;
    // Test-only seam: runs in a worker call's OnDone after the call has taken its end, while that worker call
    // still holds the call (its last reference when the server's stream has already finished), so the
    // shutdown test can widen the window in which the front could be freed under that reference.
    std::function<void()> test_attempt_ended;
};

class GenerateCall;

class FrontState {
public:
    FrontState(FrontOptions opt, std::unique_ptr<WorkerPool> pool, std::unique_ptr<tok::Tokenizer> tokenizer,
               std::unique_ptr<trace::Tracer> tracer);

    const FrontOptions& options() const { return opt_; }
    WorkerPool& pool() { return *pool_; }
    trace::Tracer& tracer() { return *tracer_; }
    FrontMetrics& metrics() { return metrics_; }
    metrics::Registry& registry() { return registry_; }
    SessionTable& sessions() { return sessions_; }

    // The model as the workers describe it; UNAVAILABLE while no worker has answered GetInfo.
    absl::StatusOr<ModelFacts> model();
    // Null when the front has none (token-id prompts only). Loaded from the workers' model file on first
    // use when no --tokenizer was given.
    const tok::Tokenizer* tokenizer();

    // Running streams, by request id (Abort).
    bool register_call(const std::string& id, std::weak_ptr<GenerateCall> call);
    void unregister_call(const std::string& id, GenerateCall* call);
    // Aborts the named streams running on this replica; returns the ids found.
    std::vector<std::string> abort_calls(const std::vector<std::string>& ids);

    std::atomic<int32_t> inflight{0};
    // The retry-after hint (ms) of a --max-inflight rejection; stream_ended feeds it.
    int64_t retry_after_ms() {
        std::lock_guard<std::mutex> l(retry_mu_);
        return retry_after_.ms_until_room(inflight.load());
    }
    void stream_ended(double ms) {
        std::lock_guard<std::mutex> l(retry_mu_);
        retry_after_.observe(ms);
    }

private:
    std::mutex retry_mu_;
    RetryAfterEstimate retry_after_;
    FrontOptions opt_;
    std::unique_ptr<WorkerPool> pool_;
    metrics::Registry registry_;
    FrontMetrics metrics_;
    std::unique_ptr<trace::Tracer> tracer_;
    SessionTable sessions_;

    std::mutex tok_mu_;
    std::unique_ptr<tok::Tokenizer> tokenizer_;
    bool tokenizer_tried_ = false;

    std::mutex calls_mu_;
    struct RegisteredCall {
        GenerateCall* raw;                // identity, for unregister (the weak_ptr is expired by then)
        std::weak_ptr<GenerateCall> call;
    };
    std::unordered_map<std::string, RegisteredCall> calls_;
};

}  // namespace dg::front
