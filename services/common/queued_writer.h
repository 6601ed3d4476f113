// The one server-streaming write reactor of deltagate: the front's Generate call, the worker's Generate
// stream and the worker's WatchLoad stream all derive from QueuedWriter (style doc §A6/§B3).
//
// Writing: producers on any thread queue messages (`queue`, or `edit_queue` to fold into a waiting one)
// and decide the end (`end` after the queue drains, `end_now` dropping what waits). Those only record,
// under the writer's own lock, so they are safe to call while holding the caller's locks. `flush()`
// makes the gRPC calls they imply — the next StartWrite, or Finish — and must be called holding no lock:
// no gRPC call is ever made under a lock. At most one write is in flight; Finish is called once.
//
// Lifetime (one scheme for every reactor): the reactor is created as a std::shared_ptr and holds a
// reference to itself (`hold_until_done`) that gRPC's OnDone drops. Everything outside gRPC's own
// reactions that may touch it — the engine thread, the load hub, an Abort RPC, the front's worker-call
// reactors — holds a shared_ptr (or a weak_ptr it locks first), so nobody can see it freed under them
// and nobody can reach it once the last reference is gone. No `delete this`, no hand-kept counts.
//
// Hooks a subclass may override run outside the writer's lock:
//   on_broken(cause)   once, when the client cancels (OnCancel) or a write fails: nothing queued will be
//                      delivered any more; the subclass decides when to end (it must call end*/flush).
//   on_finishing(st)   once, just before Finish(st) (spans, metrics).
//   on_written()       after each successful write (a pacing producer may offer the next message).
//   on_done()          gRPC's OnDone, before the self-reference is dropped.
#pragma once

#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

namespace dg {

template <class Msg>
class QueuedWriter : public grpc::ServerWriteReactor<Msg> {
public:
    enum class Broken { kCancelled, kWriteFailed };

    // Any thread, any lock held. False (and dropped) once the end is decided or the stream is broken.
    bool queue(Msg m) {
        std::lock_guard<std::mutex> l(wmu_);
        if (!accepting_locked()) return false;
        queue_.push_back(std::move(m));
        return true;
    }
    // Any thread, any lock held: `f(std::deque<Msg>&)` edits the messages not yet written (append, or
    // merge into the last). False when nothing is accepted any more (f is not called).
    template <class F>
    bool edit_queue(F&& f) {
        std::lock_guard<std::mutex> l(wmu_);
        if (!accepting_locked()) return false;
        f(queue_);
        return true;
    }
    // Any thread, any lock held: the stream ends with `st` once the queued messages are written (at once
    // when it is broken). Only the first end counts.
    void end(grpc::Status st) {
        std::lock_guard<std::mutex> l(wmu_);
        if (!end_status_) end_status_ = std::move(st);
    }
    // As end(), but drops what is still queued (an error ends the stream: undelivered output misleads).
    void end_now(grpc::Status st) {
        std::lock_guard<std::mutex> l(wmu_);
        if (end_status_) return;
        end_status_ = std::move(st);
        queue_.clear();
    }
    // No lock held: starts the next write, or the Finish once everything is written.
    void flush() {
        enum { kNone, kWrite, kFinish } act = kNone;
        grpc::Status st;
        {
            std::lock_guard<std::mutex> l(wmu_);
            if (done_ || finish_called_ || writing_) return;
            if (!broken_ && !queue_.empty()) {
                current_ = std::move(queue_.front());
                queue_.pop_front();
                writing_ = true;
                act = kWrite;
            } else if (end_status_) {
                finish_called_ = true;
                st = *end_status_;
                act = kFinish;
            }
        }
        if (act == kWrite) {
            this->StartWrite(&current_);  // OnWriteDone may run before this returns
        } else if (act == kFinish) {
            on_finishing(st);
            this->Finish(st);
        }
    }
    // Nothing in flight, nothing queued, no end decided: a pacing producer may offer the next message.
    bool idle() {
        std::lock_guard<std::mutex> l(wmu_);
        return accepting_locked() && !writing_ && queue_.empty();
    }
    // gRPC has called OnDone: the stream is over and the self-reference is gone (or going).
    bool done() {
        std::lock_guard<std::mutex> l(wmu_);
        return done_;
    }

    void OnWriteDone(bool ok) final {
        bool newly_broken = false;
        {
            std::lock_guard<std::mutex> l(wmu_);
            writing_ = false;
            if (!ok && !broken_) {
                broken_ = newly_broken = true;
                queue_.clear();
            }
        }
        if (newly_broken) on_broken(Broken::kWriteFailed);
        else if (ok) on_written();
        flush();
    }
    void OnCancel() final {
        {
            std::lock_guard<std::mutex> l(wmu_);
            if (broken_) return;
            broken_ = true;
            queue_.clear();
        }
        on_broken(Broken::kCancelled);
        flush();
    }
    void OnDone() final {
        std::shared_ptr<QueuedWriter> keep;
        {
            std::lock_guard<std::mutex> l(wmu_);
            done_ = true;
            keep = std::move(self_);
        }
        on_done();
        // `keep` may be the last reference: `this` can be destroyed as it goes out of scope.
    }

protected:
    // The factory of each subclass calls this once, right after creating the shared_ptr.
    void hold_until_done(std::shared_ptr<QueuedWriter> self) {
        std::lock_guard<std::mutex> l(wmu_);
        self_ = std::move(self);
    }
    virtual void on_broken(Broken) {}
    virtual void on_finishing(const grpc::Status&) {}
    virtual void on_written() {}
    virtual void on_done() {}

private:
    bool accepting_locked() const { return !end_status_ && !broken_ && !done_; }

    std::mutex wmu_;
    std::deque<Msg> queue_;
    Msg current_;  // the write in flight
    bool writing_ = false, finish_called_ = false, broken_ = false, done_ = false;
    std::optional<grpc::Status> end_status_;
    std::shared_ptr<QueuedWriter> self_;
};

// A stream refused before it starts (a call that fails authentication): it finishes with `st` at once,
// under the same lifetime scheme. Returned straight from a callback handler.
template <class Msg>
class RefusedStream final : public QueuedWriter<Msg> {
public:
    static grpc::ServerWriteReactor<Msg>* create(grpc::Status st) {
        std::shared_ptr<RefusedStream> s(new RefusedStream());
        s->hold_until_done(s);
        s->end(std::move(st));
        s->flush();  // gRPC holds the Finish until the handler has returned the reactor
        return s.get();
    }

private:
    RefusedStream() = default;
};

}  // namespace dg
