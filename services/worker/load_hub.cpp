#include "services/worker/load_hub.h"

#include <algorithm>

namespace dg::worker {

namespace pb = ::deltagate::worker::v1;

// --- WatchStream

WatchStream::Clock::time_point WatchStream::offer(const pb::LoadReport& r, uint64_t version, Clock::time_point now) {
    std::unique_lock lock(mu_);
    if (finished_ || closing_ || writing_ || version == sent_version_) return Clock::time_point::max();
    if (sent_version_ != 0 && now < last_sent_ + interval_) return last_sent_ + interval_;
    current_ = r;
    sent_version_ = version;
    last_sent_ = now;
    writing_ = true;
    lock.unlock();
    StartWrite(&current_);
    return Clock::time_point::max();
}

void WatchStream::finish_locked(std::unique_lock<std::mutex>& lock, grpc::Status st) {
    if (finished_) return;
    finished_ = true;
    lock.unlock();
    Finish(st);
}

void WatchStream::close(grpc::Status st) {
    std::unique_lock lock(mu_);
    closing_ = true;
    close_status_ = st;
    if (!writing_) finish_locked(lock, st);
}

bool WatchStream::done() {
    std::lock_guard lock(mu_);
    return ended_;
}

void WatchStream::OnWriteDone(bool ok) {
    std::unique_lock lock(mu_);
    writing_ = false;
    if (!ok) {
        finish_locked(lock, grpc::Status(grpc::StatusCode::CANCELLED, "load watcher went away"));
        return;
    }
    if (closing_) {
        finish_locked(lock, close_status_);
        return;
    }
    lock.unlock();
    hub_->wake();  // a newer report may be waiting for this watcher
}

void WatchStream::OnCancel() {
    std::unique_lock lock(mu_);
    closing_ = true;
    close_status_ = grpc::Status::CANCELLED;
    if (!writing_) finish_locked(lock, close_status_);
}

void WatchStream::OnDone() {
    std::shared_ptr<WatchStream> keep;
    {
        std::lock_guard lock(mu_);
        ended_ = true;
        keep = std::move(self_);
    }
    hub_->wake();  // drop it from the list
}

// --- LoadHub

LoadHub::LoadHub() { thread_ = std::thread([this] { run(); }); }

LoadHub::~LoadHub() {
    close_all(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is shutting down"));
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
}

void LoadHub::publish(const pb::LoadReport& r) {
    std::string bytes = r.SerializeAsString();
    {
        std::lock_guard lock(mu_);
        if (version_ > 0 && bytes == latest_bytes_) return;
        latest_ = r;
        latest_bytes_ = std::move(bytes);
        ++version_;
        kicked_ = true;
    }
    cv_.notify_one();
}

grpc::ServerWriteReactor<pb::LoadReport>* LoadHub::watch(std::chrono::milliseconds interval) {
    std::shared_ptr<WatchStream> w(new WatchStream(this, interval));
    w->self_ = w;
    WatchStream* raw = w.get();
    bool closed;
    grpc::Status st;
    {
        std::lock_guard lock(mu_);
        closed = closed_;
        st = close_status_;
        if (!closed) {
            watchers_.push_back(w);
            kicked_ = true;
        }
    }
    if (closed) raw->close(st);
    else cv_.notify_one();
    return raw;
}

void LoadHub::close_all(grpc::Status st) {
    std::vector<std::shared_ptr<WatchStream>> ws;
    {
        std::lock_guard lock(mu_);
        closed_ = true;
        close_status_ = st;
        ws = watchers_;
    }
    for (auto& w : ws) w->close(st);
}

pb::LoadReport LoadHub::latest() {
    std::lock_guard lock(mu_);
    return latest_;
}

void LoadHub::wake() {
    {
        std::lock_guard lock(mu_);
        kicked_ = true;
    }
    cv_.notify_one();
}

void LoadHub::run() {
    using Clock = WatchStream::Clock;
    Clock::time_point next = Clock::time_point::max();
    std::unique_lock lock(mu_);
    for (;;) {
        if (next == Clock::time_point::max()) cv_.wait(lock, [&] { return stop_ || kicked_; });
        else cv_.wait_until(lock, next, [&] { return stop_ || kicked_; });
        if (stop_) return;
        kicked_ = false;
        std::erase_if(watchers_, [](const std::shared_ptr<WatchStream>& w) { return w->done(); });
        const pb::LoadReport report = latest_;
        const uint64_t version = version_;
        std::vector<std::shared_ptr<WatchStream>> ws = watchers_;
        lock.unlock();
        next = Clock::time_point::max();
        if (version > 0) {
            const Clock::time_point now = Clock::now();
            for (auto& w : ws) next = std::min(next, w->offer(report, version, now));
        }
        ws.clear();  // drop references outside the lock
        lock.lock();
    }
}

}  // namespace dg::worker
