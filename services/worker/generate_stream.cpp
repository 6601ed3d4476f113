#include "services/worker/generate_stream.h"

namespace dg::worker {

std::shared_ptr<GenerateStream> GenerateStream::create(std::function<void()> on_cancel) {
    std::shared_ptr<GenerateStream> s(new GenerateStream(std::move(on_cancel)));
    s->self_ = s;
    return s;
}

void GenerateStream::push(deltagate::worker::v1::GenerateEvent ev) {
    std::unique_lock lock(mu_);
    if (finish_requested_ || broken_) return;
    queue_.push_back(std::move(ev));
    pump(lock);
}

void GenerateStream::finish(grpc::Status st) {
    std::unique_lock lock(mu_);
    if (finish_requested_) return;
    finish_requested_ = true;
    status_ = std::move(st);
    pump(lock);
}

void GenerateStream::pump(std::unique_lock<std::mutex>& lock) {
    if (writing_ || finished_) return;
    if (!broken_ && !queue_.empty()) {
        current_ = std::move(queue_.front());
        queue_.pop_front();
        writing_ = true;
        lock.unlock();
        StartWrite(&current_);  // OnWriteDone may run before this returns: touch nothing after it
        return;
    }
    if (finish_requested_) {
        finished_ = true;
        grpc::Status st = status_;
        lock.unlock();
        Finish(st);
    }
}

void GenerateStream::OnWriteDone(bool ok) {
    std::unique_lock lock(mu_);
    writing_ = false;
    if (!ok) {
        // The client is gone (or the call was cancelled): nothing more will be delivered.
        broken_ = true;
        queue_.clear();
        lock.unlock();
        cancel_once();
        lock.lock();
    }
    pump(lock);
}

void GenerateStream::OnCancel() {
    {
        std::lock_guard lock(mu_);
        broken_ = true;
        queue_.clear();
    }
    // Finish comes when the engine reports the request ended (the cancel it is about to get).
    cancel_once();
}

void GenerateStream::cancel_once() {
    std::function<void()> fn;
    {
        std::lock_guard lock(mu_);
        if (cancel_sent_) return;
        cancel_sent_ = true;
        fn = on_cancel_;
    }
    if (fn) fn();
}

void GenerateStream::OnDone() {
    std::shared_ptr<GenerateStream> keep;
    {
        std::lock_guard lock(mu_);
        keep = std::move(self_);
        on_cancel_ = nullptr;
    }
    // `keep` may be the last reference: `this` can be destroyed as it goes out of scope.
}

}  // namespace dg::worker
