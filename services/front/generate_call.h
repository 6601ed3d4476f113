// One Generate or BatchGenerate stream: a gRPC callback write reactor to the client fed by one or more
// worker streams ("legs": one worker request each, n continuations forked from one prefill). Legs of a
// BatchGenerate are routed to the same worker; when there are several, the first runs alone until its
// first event so the shared prefix is prefilled once and the siblings resume from its checkpoint.
//
// Rules kept here (style doc §A6/§B3): the client stream is a QueuedWriter (services/common/queued_writer.h:
// one write in flight, Finish once, the one lifetime scheme); deltas of a continuation are merged while they
// wait; no gRPC call (StartWrite, Finish, TryCancel, abort_async, a launch) is made while holding mu_ — what
// a locked section decides is collected in a FollowUps and done after unlocking. Lifetime: the call is a
// shared_ptr that holds itself until gRPC's OnDone, and each worker attempt holds it until the attempt's
// own OnDone; FrontState's registry keeps weak_ptrs, so an Abort can only reach a call some reference
// still keeps alive. A worker that fails before its leg streamed a token is retried on another worker;
// one that fails after has each unfinished continuation of its leg migrated (docs/reliability.md): a new
// leg, n = 1, whose prompt is the original prompt + the tokens already sent, marked as resumed so the
// worker's sampler continues at the same positions; the client stream goes on, nothing repeated, nothing
// lost. Past the migration budget the stream ends with UNAVAILABLE. Client cancellation and deadline
// cancel the worker calls (their deadline is the client's).
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "services/front/protos.h"
#include "deltagate/v1/inference.pb.h"
#include "deltagate/worker/v1/worker.grpc.pb.h"
#include "services/front/output_track.h"
#include "services/common/queued_writer.h"
#include "services/common/span.h"
#include "services/front/worker_pool.h"

namespace dg::front {

class FrontState;

struct LegPlan {
    worker::v1::GenerateRequest request;  // request_id, prompt, sampling, n, ...
    std::vector<int> out_index;           // worker continuation index -> public index
};

struct CallPlan {
    std::string rpc;                      // "Generate" | "BatchGenerate"
    std::string protocol = "grpc";        // grpc | http (the metrics' protocol label)
    std::string request_id;
    std::string model;
    std::string operation;                // gen_ai.operation.name: chat | text_completion
    std::string session_id;
    uint64_t cache_salt = 0;
    bool logprobs = false;
    std::vector<LegPlan> legs;
    std::vector<TrackOptions> tracks;     // one per public continuation index
    std::vector<std::string> stop;        // for the span
    bool stagger = false;                 // start legs 1.. after leg 0's first event
    trace::Span server_span;                     // started by the handler
    std::optional<trace::TraceContext> incoming; // the client's traceparent
    std::string incoming_traceparent;     // as received (passed through when tracing is off here)
    std::chrono::steady_clock::time_point start;
};

class GenerateCall : public QueuedWriter<v1::GenerateResponse> {
public:
    static std::shared_ptr<GenerateCall> create(FrontState& front, grpc::CallbackServerContext* ctx, CallPlan plan);
    ~GenerateCall() override;
    // Routes and starts the legs. Call once, right after create(), holding the returned shared_ptr.
    void start();
    // Ends the stream with CANCELLED (Abort RPC). The caller holds a shared_ptr.
    void abort(const std::string& why);

private:
    class Attempt;
    struct Leg {
        LegPlan plan;
        std::vector<std::string> tried;   // worker addresses already used by this leg
        Attempt* current = nullptr;
        std::shared_ptr<WorkerHandle> worker;
        bool started = false;
        bool emitted = false;             // a token of this leg reached the client queue
        bool complete = false;
        bool closed_by_front = false;     // every continuation ended by a stop string: the call was cancelled
        bool has_usage = false;
        worker::v1::Usage usage;
        int32_t last_token = -1;
        // A migrated continuation: its request derives from leg `origin_leg`'s (continuation
        // `origin_index` of it); its prompt is not counted again in the usage.
        bool migrated = false;
        int origin_leg = -1;
        int origin_index = 0;
    };
    enum class EventAction { kRead, kStop, kCancel };
    // gRPC calls a locked section decided on, made after mu_ is released (in this order).
    struct FollowUps {
        std::vector<Attempt*> launch;
        std::vector<Attempt*> cancel;
        std::optional<worker::v1::AbortRequest> abort_continuation;  // sent to the event's worker
    };

    GenerateCall(FrontState& front, grpc::CallbackServerContext* ctx, CallPlan plan);
    // Picks a worker for `leg` and creates its attempt (under mu_); nullptr + `err` when none is usable.
    Attempt* make_attempt_locked(int leg, grpc::Status* err);
    void launch(Attempt* a);  // outside mu_
    EventAction on_event(Attempt* a, const worker::v1::GenerateEvent& ev, FollowUps* after);
    void run(Attempt* a, FollowUps& after);  // outside mu_
    void on_attempt_done(Attempt* a, const grpc::Status& s);
    void cancel(const std::vector<Attempt*>& attempts);  // outside mu_
    void enqueue_locked(v1::GenerateResponse msg);
    void enqueue_delta_locked(v1::Delta d);
    void fail_locked(grpc::Status s, std::vector<Attempt*>* to_cancel);
    // Moves every unfinished continuation of failed leg `li` to a new leg on another worker (appended to
    // `to_launch`). False (and `err`) when the budget is spent or no worker is left.
    bool migrate_locked(int li, const grpc::Status& why, const std::string& from, std::vector<Attempt*>* to_launch,
                        grpc::Status* err);
    void maybe_complete_locked();
    // QueuedWriter hooks.
    void on_broken(Broken why) override;
    void on_finishing(const grpc::Status& s) override;  // metrics and spans of the outcome

    FrontState& front_;
    // This call's count in front_.inflight, from construction until the last of its members is destroyed
    // (declared first after front_, so destroyed last): the front frees its state only once the count is 0
    // (FrontServer::wait_for_calls_to_end), and the call can be destroyed on a gRPC thread after the server
    // has stopped (its last worker call ending), so nothing may touch front_ after this is gone.
    struct InflightCount {
        explicit InflightCount(std::atomic<int32_t>& n) : n_(n) { n_.fetch_add(1); }
        ~InflightCount() { n_.fetch_sub(1); }
        std::atomic<int32_t>& n_;
    } inflight_count_;
    grpc::CallbackServerContext* ctx_;
    CallPlan plan_;

    std::mutex mu_;
    std::deque<Leg> legs_;  // a deque: migration appends legs while attempts point into their requests
    std::vector<std::unique_ptr<OutputTrack>> tracks_;
    std::vector<std::unique_ptr<Attempt>> attempts_;  // owned until the call is deleted
    std::optional<grpc::Status> finish_status_;  // set once: the stream's outcome (the writer ends with it)
    bool registered_ = false;
    std::weak_ptr<GenerateCall> weak_self_;       // what each attempt holds a strong copy of
    std::optional<std::chrono::steady_clock::time_point> first_token_, last_token_;
    std::vector<std::chrono::steady_clock::time_point> last_token_at_;  // per continuation
    std::vector<std::vector<int32_t>> sent_tokens_;  // per continuation: the ids that reached the client queue
    std::vector<int> migrated_;  // per continuation: how often it moved (bounded by max_migrations)
    int migrations_ = 0;         // over the call (names the migrated requests)
    std::optional<int64_t> retry_after_ms_;  // the smallest hint of the workers that refused (overload)
    trace::Span gen_span_;
};

}  // namespace dg::front
