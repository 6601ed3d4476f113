#include "engine/cpu/parallel.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace dg::cpu {
namespace {

class Pool {
public:
    explicit Pool(int n) {
        for (int i = 1; i < n; ++i) workers_.emplace_back([this, i] { loop(i); });
        size_ = n;
    }
    ~Pool() {
        {
            std::lock_guard<std::mutex> lk(mu_);
            stop_ = true;
            ++generation_;
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
    }
    int size() const { return size_; }

    void run(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
        int parts = int(std::min<int64_t>(size_, std::max<int64_t>(1, n / std::max<int64_t>(min_chunk, 1))));
        if (parts <= 1) {
            fn(0, n);
            return;
        }
        std::unique_lock<std::mutex> call(call_mu_);  // one parallel_for at a time
        {
            std::lock_guard<std::mutex> lk(mu_);
            fn_ = &fn;
            n_ = n;
            parts_ = parts;
            pending_ = parts - 1;
            ++generation_;
        }
        cv_.notify_all();
        chunk(0);
        std::unique_lock<std::mutex> lk(mu_);
        done_cv_.wait(lk, [&] { return pending_ == 0; });
        fn_ = nullptr;
    }

private:
    void chunk(int part) {
        int64_t b = n_ * part / parts_, e = n_ * (part + 1) / parts_;
        if (b < e) (*fn_)(b, e);
    }
    void loop(int id) {
        uint64_t seen = 0;
        for (;;) {
            {
                std::unique_lock<std::mutex> lk(mu_);
                cv_.wait(lk, [&] { return generation_ != seen; });
                seen = generation_;
                if (stop_) return;
                if (id >= parts_) continue;
            }
            chunk(id);
            std::lock_guard<std::mutex> lk(mu_);
            if (--pending_ == 0) done_cv_.notify_one();
        }
    }

    std::vector<std::thread> workers_;
    std::mutex mu_, call_mu_;
    std::condition_variable cv_, done_cv_;
    const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
    int64_t n_ = 0;
    int parts_ = 0, pending_ = 0, size_ = 1;
    uint64_t generation_ = 0;
    bool stop_ = false;
};

Pool& pool() {
    static Pool p([] {
        if (const char* e = std::getenv("DG_CPU_THREADS")) {
            int v = std::atoi(e);
            if (v > 0) return std::min(v, 256);
        }
        return int(std::max(1u, std::thread::hardware_concurrency()));
    }());
    return p;
}

}  // namespace

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
    if (n <= 0) return;
    pool().run(n, fn, min_chunk);
}

int num_threads() { return pool().size(); }

}  // namespace dg::cpu
