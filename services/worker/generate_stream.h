// The server side of one Generate call: a ServerWriteReactor with a queue of events and one write in
// flight (style doc §A6/§B3). The engine thread pushes events and never waits for the client; the
// queue grows instead (bounded by max_tokens × n of the request). A broken or cancelled stream drops
// what is queued and asks the engine to cancel the request, which frees its blocks and slot at once.
//
// Lifetime: the reactor owns itself (self_) until gRPC calls OnDone; the engine side holds another
// shared_ptr while the request lives, so neither side can see it freed under it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

#include "deltagate/worker/v1/worker.grpc.pb.h"

namespace dg::worker {

class GenerateStream final : public grpc::ServerWriteReactor<deltagate::worker::v1::GenerateEvent> {
public:
    // `on_cancel` runs at most once, on a gRPC thread, when the client cancels, the deadline passes,
    // the server shuts down, or a write fails; it must not block (post to the engine thread).
    static std::shared_ptr<GenerateStream> create(std::function<void()> on_cancel);

    // Any thread. Events after finish() are dropped.
    void push(deltagate::worker::v1::GenerateEvent ev);
    // Any thread: ends the call with `st` once the queued events are written (or at once when the
    // stream is broken). Only the first call counts.
    void finish(grpc::Status st);

    void OnWriteDone(bool ok) override;
    void OnCancel() override;
    void OnDone() override;

private:
    explicit GenerateStream(std::function<void()> on_cancel) : on_cancel_(std::move(on_cancel)) {}
    // Starts the next write or the Finish; releases the lock before calling into gRPC.
    void pump(std::unique_lock<std::mutex>& lock);
    void cancel_once();

    std::mutex mu_;
    std::deque<deltagate::worker::v1::GenerateEvent> queue_;
    deltagate::worker::v1::GenerateEvent current_;  // the write in flight
    bool writing_ = false, finish_requested_ = false, finished_ = false, broken_ = false;
    grpc::Status status_;
    std::function<void()> on_cancel_;
    bool cancel_sent_ = false;
    std::shared_ptr<GenerateStream> self_;
};

}  // namespace dg::worker
