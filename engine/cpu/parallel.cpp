#include "engine/cpu/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace dg::cpu {
namespace {

using Fn = std::function<void(int64_t, int64_t)>;

// How long a thread polls before it sleeps: a worker waiting for the next job, the caller waiting for the
// workers' last chunks. Longer than the serial gaps between the ops of a decode step (a few µs), so a
// step runs without a single futex wake; short enough that an idle process is idle.
constexpr auto kSpin = std::chrono::microseconds(100);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

// Polls ready() until it holds or kSpin has passed; returns ready(). Pauses between polls, and yields
// the core now and then, so a spinning worker that shares a core with the caller (on a loaded machine)
// does not hold it up.
template <class Ready>
bool spin_until(Ready ready) {
    std::chrono::steady_clock::time_point deadline{};
    for (int round = 0;; ++round) {
        for (int i = 0; i < 64; ++i) {
            if (ready()) return true;
            cpu_relax();
        }
        const auto now = std::chrono::steady_clock::now();
        if (round == 0) deadline = now + kSpin;
        else if (now >= deadline) return ready();
        if (round % 4 == 3) std::this_thread::yield();
    }
}

thread_local bool t_in_pool = false;  // a pool worker, or a caller inside parallel_for: nested calls run inline

class Pool {
public:
    explicit Pool(int n) : size_(n) {
        for (int i = 1; i < n; ++i) workers_.emplace_back([this] { loop(); });
    }
    ~Pool() {
        stop_.store(true);
        gen_.fetch_add(1);
        gen_.notify_all();
        for (auto& t : workers_) t.join();
    }
    int size() const { return size_; }

    void run(int64_t n, const Fn& fn, int parts) {
        std::lock_guard<std::mutex> call(call_mu_);  // one job at a time
        // No chunk of the previous job is running or can still be claimed, so nothing reads these now.
        fn_ = &fn;
        n_ = n;
        error_ = nullptr;
        remaining_.store(parts, std::memory_order_relaxed);
        const uint32_t g = ++published_;
        claim_.store(pack(g, uint32_t(parts), 0), std::memory_order_release);
        gen_.store(g, std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_seq_cst) > 0) gen_.notify_all();

        t_in_pool = true;
        take_chunks();  // the caller works too, and takes whatever the workers have not started
        t_in_pool = false;
        if (!spin_until([&] { return remaining_.load(std::memory_order_acquire) == 0; })) {
            caller_waiting_.store(true, std::memory_order_seq_cst);
            for (int r; (r = remaining_.load(std::memory_order_seq_cst)) != 0;) remaining_.wait(r);
            caller_waiting_.store(false, std::memory_order_relaxed);
        }
        fn_ = nullptr;
        if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    }

private:
    // The claim word: generation (32 bits) | chunks (16) | next chunk to hand out (16). One CAS on it
    // claims a chunk of exactly the job that word describes.
    static uint64_t pack(uint32_t gen, uint32_t parts, uint32_t next) {
        return uint64_t(gen) << 32 | uint64_t(parts) << 16 | next;
    }

    void take_chunks() {
        uint64_t c = claim_.load(std::memory_order_acquire);
        for (;;) {
            const uint32_t parts = uint32_t(c >> 16) & 0xffff, next = uint32_t(c) & 0xffff;
            if (next >= parts) return;
            if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire))
                continue;
            // Claimed: the job cannot finish before this chunk does, so fn_ and n_ are its own.
            const int64_t b = n_ * next / parts, e = n_ * (next + 1) / parts;
            try {
                if (b < e) (*fn_)(b, e);
            } catch (...) {
                std::lock_guard<std::mutex> lk(error_mu_);
                if (!error_) error_ = std::current_exception();
            }
            if (remaining_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
                caller_waiting_.load(std::memory_order_seq_cst))
                remaining_.notify_one();
            c = claim_.load(std::memory_order_acquire);
        }
    }

    void loop() {
        t_in_pool = true;
        uint32_t seen = 0;
        for (;;) {
            uint32_t g = seen;
            if (!spin_until([&] { return (g = gen_.load(std::memory_order_acquire)) != seen; })) {
                sleepers_.fetch_add(1, std::memory_order_seq_cst);
                while ((g = gen_.load(std::memory_order_seq_cst)) == seen) gen_.wait(seen);
                sleepers_.fetch_sub(1, std::memory_order_relaxed);
            }
            seen = g;
            if (stop_.load(std::memory_order_acquire)) return;
            take_chunks();
        }
    }

    const int size_;
    std::vector<std::thread> workers_;
    std::mutex call_mu_, error_mu_;
    const Fn* fn_ = nullptr;
    int64_t n_ = 0;
    std::exception_ptr error_;
    uint32_t published_ = 0;  // the caller's count of jobs (under call_mu_)
    alignas(64) std::atomic<uint64_t> claim_{0};
    alignas(64) std::atomic<uint32_t> gen_{0};  // futex word the workers sleep on
    std::atomic<int> sleepers_{0};
    std::atomic<bool> stop_{false};
    alignas(64) std::atomic<int> remaining_{0};  // chunks of the current job not yet finished
    std::atomic<bool> caller_waiting_{false};
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

namespace {
void run_parts(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk, int per_thread) {
    if (n <= 0) return;
    if (t_in_pool) {  // nested: inside a chunk, the other threads are busy with this job's other chunks
        fn(0, n);
        return;
    }
    Pool& p = pool();
    const int64_t most = std::min<int64_t>(int64_t(p.size()) * std::max(per_thread, 1), 0xffff);
    const int parts = int(std::min<int64_t>(most, std::max<int64_t>(1, n / std::max<int64_t>(min_chunk, 1))));
    if (parts <= 1) {
        fn(0, n);
        return;
    }
    p.run(n, fn, parts);
}
}  // namespace

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
    run_parts(n, fn, min_chunk, 1);
}

void parallel_for_balanced(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int per_thread,
                           int64_t min_chunk) {
    run_parts(n, fn, min_chunk, per_thread);
}

int matmul_chunks_per_thread() {
    static const int v = [] {
        const char* e = std::getenv("DG_CPU_MATMUL_CHUNKS");
        const int k = e ? std::atoi(e) : 0;
        return k > 0 ? std::min(k, 64) : kMatmulChunksPerThread;
    }();
    return v;
}

int num_threads() { return pool().size(); }

}  // namespace dg::cpu
