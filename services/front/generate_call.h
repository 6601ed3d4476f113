// One Generate or BatchGenerate stream: a gRPC callback write reactor to the client fed by one or more
// worker streams ("legs": one worker request each, n continuations forked from one prefill). Legs of a
// BatchGenerate are routed to the same worker; when there are several, the first runs alone until its
// first event so the shared prefix is prefilled once and the siblings resume from its checkpoint.
//
// Rules kept here (style doc §A6/§B3): one client write in flight, deltas of a continuation merged while
// they wait; Finish once; no gRPC call (StartWrite, Finish, TryCancel, abort_async, a launch) made while
// holding mu_ — what a locked section decides is collected in a FollowUps and done after unlocking; the
// object deletes itself when the client call and every worker attempt are done (pending_ reaches zero),
// and nothing can take a new reference after that (try_hold fails), so FrontState::abort_calls cannot
// reach a call that is being deleted. A worker that fails before its leg streamed a token is retried on
// another worker; after that the stream ends with UNAVAILABLE. Client cancellation and deadline cancel
// the worker calls (their deadline is the client's).
#pragma once

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

class GenerateCall : public grpc::ServerWriteReactor<v1::GenerateResponse> {
public:
    GenerateCall(FrontState& front, grpc::CallbackServerContext* ctx, CallPlan plan);
    // Routes and starts the legs. Call once, right after construction.
    void start();
    // Ends the stream with CANCELLED (Abort RPC). The caller holds a reference (try_hold()).
    void abort(const std::string& why);
    // Keeps the call alive across a call from outside gRPC's reactions; release() gives it back. False
    // when the last reference is already gone (the call is being deleted): the caller must not touch it.
    bool try_hold();
    void release();  // one of the pending completions is done; deletes this after the last

    void OnWriteDone(bool ok) override;
    void OnCancel() override;
    void OnDone() override;

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
    };
    enum class EventAction { kRead, kStop, kCancel };
    // gRPC calls a locked section decided on, made after mu_ is released (in this order).
    struct FollowUps {
        std::vector<Attempt*> launch;
        std::vector<Attempt*> cancel;
        std::optional<worker::v1::AbortRequest> abort_continuation;  // sent to the event's worker
    };

    ~GenerateCall() override;
    // Picks a worker for `leg` and creates its attempt (under mu_); nullptr + `err` when none is usable.
    Attempt* make_attempt_locked(int leg, grpc::Status* err);
    void launch(Attempt* a);  // outside mu_
    EventAction on_event(Attempt* a, const worker::v1::GenerateEvent& ev, FollowUps* after);
    void run(Attempt* a, FollowUps& after);  // outside mu_
    void on_attempt_done(Attempt* a, const grpc::Status& s);
    void enqueue_locked(v1::GenerateResponse msg);
    void enqueue_delta_locked(v1::Delta d);
    void fail_locked(grpc::Status s, std::vector<Attempt*>* to_cancel);
    void maybe_complete_locked();
    void pump();  // starts the next write or the Finish, outside mu_
    void finish_span(const grpc::Status& s);

    FrontState& front_;
    grpc::CallbackServerContext* ctx_;
    CallPlan plan_;

    std::mutex mu_;
    std::vector<Leg> legs_;
    std::vector<std::unique_ptr<OutputTrack>> tracks_;
    std::vector<std::unique_ptr<Attempt>> attempts_;  // owned until the call is deleted
    std::deque<v1::GenerateResponse> out_;
    v1::GenerateResponse writing_msg_;
    bool writing_ = false;
    std::optional<grpc::Status> finish_status_;  // set once: the stream's outcome
    bool finish_called_ = false;
    bool server_done_ = false;
    int pending_ = 1;                            // the server call + every attempt not yet done
    bool registered_ = false;
    std::optional<std::chrono::steady_clock::time_point> first_token_, last_token_;
    std::vector<std::chrono::steady_clock::time_point> last_token_at_;  // per continuation
    trace::Span gen_span_;
};

}  // namespace dg::front
