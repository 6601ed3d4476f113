// WatchLoad: the engine thread publishes LoadReports (load + checkpoint digest); the hub's own thread
// hands the newest one to each watcher when it changed and that watcher's interval has passed, one
// write in flight per watcher. A slow watcher only ever skips to the newest report: nothing queues.
// Each watcher is a QueuedWriter (services/common/queued_writer.h) offered a report only when idle.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "deltagate/worker/v1/worker.grpc.pb.h"
#include "services/common/queued_writer.h"

namespace dg::worker {

class LoadHub;

class WatchStream final : public QueuedWriter<deltagate::worker::v1::LoadReport> {
public:
    using Clock = std::chrono::steady_clock;

    // Hub thread: queues `r` if it is newer than what was sent, nothing is in flight and the interval
    // has passed. Returns when it wants to be offered again (time_point::max() = only when something
    // changes).
    Clock::time_point offer(const deltagate::worker::v1::LoadReport& r, uint64_t version, Clock::time_point now);
    // Ends the stream (server shutdown).
    void close(grpc::Status st);

private:
    friend class LoadHub;
    WatchStream(LoadHub* hub, std::chrono::milliseconds interval) : hub_(hub), interval_(interval) {}
    void on_broken(Broken) override;
    void on_written() override;
    void on_done() override;

    LoadHub* hub_;
    std::chrono::milliseconds interval_;
    std::mutex mu_;  // the pacing below (the hub thread is the only producer)
    uint64_t sent_version_ = 0;
    Clock::time_point last_sent_{};
};

class LoadHub {
public:
    LoadHub();
    ~LoadHub();  // close_all + join

    // Any thread (the engine thread). Cheap when the report did not change.
    void publish(const deltagate::worker::v1::LoadReport& r);
    // A new watcher; the current report goes out at once.
    grpc::ServerWriteReactor<deltagate::worker::v1::LoadReport>* watch(std::chrono::milliseconds interval);
    // Ends every watcher's stream with `st` and refuses new ones the same way.
    void close_all(grpc::Status st);
    // The newest report (GetInfo-style snapshot; tests).
    deltagate::worker::v1::LoadReport latest();

    void wake();

private:
    void run();

    std::mutex mu_;
    std::condition_variable cv_;
    deltagate::worker::v1::LoadReport latest_;
    std::string latest_bytes_;
    uint64_t version_ = 0;
    bool kicked_ = false, stop_ = false, closed_ = false;
    grpc::Status close_status_;
    std::vector<std::shared_ptr<WatchStream>> watchers_;
    std::thread thread_;
};

}  // namespace dg::worker
