// The server side of one worker Generate call: a QueuedWriter (services/common/queued_writer.h: one
// write in flight, the one lifetime scheme). The engine thread pushes events and never waits for the
// client; the queue grows instead (bounded by max_tokens × n of the request). A broken or cancelled
// stream drops what is queued and asks the engine to cancel the request, which frees its blocks and slot
// at once; the engine's end of the request then finishes the call.
//
// Lifetime: the reactor holds itself until gRPC calls OnDone; the engine side holds another shared_ptr
// while the request lives, so neither side can see it freed under it.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "deltagate/worker/v1/worker.grpc.pb.h"
#include "services/common/queued_writer.h"

namespace dg::worker {

class GenerateStream final : public QueuedWriter<deltagate::worker::v1::GenerateEvent> {
public:
    // `on_cancel` runs at most once, on a gRPC thread, when the client cancels, the deadline passes,
    // the server shuts down, or a write fails; it must not block (post to the engine thread).
    // `ctx` (may be null) receives the trailing metadata given to finish().
    static std::shared_ptr<GenerateStream> create(std::function<void()> on_cancel,
                                                  grpc::CallbackServerContext* ctx = nullptr);

    // Any thread, no lock held. Events after finish() are dropped.
    void push(deltagate::worker::v1::GenerateEvent ev) {
        if (queue(std::move(ev))) flush();
    }
    // Any thread, no lock held: ends the call with `st` once the queued events are written (or at once
    // when the stream is broken). Only the first call counts.
    void finish(grpc::Status st) {
        end(std::move(st));
        flush();
    }
    // As finish(), with one trailing metadata entry (a rejection's retry-after hint).
    void finish(grpc::Status st, std::string key, std::string value) {
        {
            std::lock_guard lock(mu_);
            trailing_.emplace_back(std::move(key), std::move(value));
        }
        finish(std::move(st));
    }

private:
    GenerateStream(std::function<void()> on_cancel, grpc::CallbackServerContext* ctx)
        : on_cancel_(std::move(on_cancel)), ctx_(ctx) {}
    void on_broken(Broken) override;
    void on_finishing(const grpc::Status&) override;
    void on_done() override;

    std::mutex mu_;
    std::function<void()> on_cancel_;  // cleared once used, and at OnDone
    grpc::CallbackServerContext* ctx_;
    std::vector<std::pair<std::string, std::string>> trailing_;
};

}  // namespace dg::worker
