#include "services/worker/load_hub.h"

#include <algorithm>

namespace dg::worker {

namespace pb = ::deltagate::worker::v1;

// --- WatchStream

WatchStream::Clock::time_point WatchStream::offer(const pb::LoadReport& r, uint64_t version, Clock::time_point now) {
    {
        std::lock_guard lock(mu_);
        if (version == sent_version_ || !idle()) return Clock::time_point::max();
        if (sent_version_ != 0 && now < last_sent_ + interval_) return last_sent_ + interval_;
        if (!queue(r)) return Clock::time_point::max();
        sent_version_ = version;
        last_sent_ = now;
    }
    flush();
    return Clock::time_point::max();
}

void WatchStream::close(grpc::Status st) {
    end(std::move(st));
    flush();
}

void WatchStream::on_broken(Broken why) {
    end(grpc::Status(grpc::StatusCode::CANCELLED,
                     why == Broken::kCancelled ? "load watcher cancelled" : "load watcher went away"));
}

void WatchStream::on_written() { hub_->wake(); }  // a newer report may be waiting for this watcher

void WatchStream::on_done() { hub_->wake(); }  // drop it from the list

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
    w->hold_until_done(w);
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
