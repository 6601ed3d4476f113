#include "engine/cpu/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <exception>
#include <memory>
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

namespace {

// One thread's share of a parallel_for_stealing call: [front, back) in grains, in one word so that the
// owner's claims from the front and the thieves' from the back can never overlap.
struct alignas(64) StealRange {
    std::atomic<uint64_t> front_back;
};
constexpr uint64_t pack_range(uint64_t front, uint64_t back) { return back << 32 | front; }

// The owner's next claim from the front: half of what is left, so the claims shrink toward the end and the
// one the owner holds when a thief arrives is short. Consecutive claims are adjacent, so the owner's reads
// stay one forward stream. Not smaller pieces: each claim is a locked instruction, which waits for the
// loads in flight (the matmul's stream) to land; claiming an eighth at a time, those waits were 3.8% of a
// q4_k_m decode step's samples, and halves decoded 2-5% faster (PERFORMANCE.md, eleventh part).
bool claim_front(StealRange& r, int64_t* b, int64_t* e) {
    const uint64_t w = r.front_back.load(std::memory_order_relaxed);
    const int64_t front = int64_t(w & 0xffffffff), back = int64_t(w >> 32);
    if (front >= back) return false;
    const int64_t want = std::max<int64_t>(1, (back - front) / 2);
    // fetch_add moves only the front; it may pass the back (a thief took the rest): then nothing is ours.
    const uint64_t was = r.front_back.fetch_add(uint64_t(want), std::memory_order_acq_rel);
    const int64_t f = int64_t(was & 0xffffffff), bk = int64_t(was >> 32);
    if (f >= bk) return false;
    *b = f;
    *e = std::min(f + want, bk);
    return true;
}

// A thief's claim from the back: half of what is left, so owner and thief finish together unless one of
// them is slowed again (then the next steal halves the rest).
bool claim_back(StealRange& r, int64_t* b, int64_t* e) {
    uint64_t w = r.front_back.load(std::memory_order_relaxed);
    for (;;) {
        const int64_t front = int64_t(w & 0xffffffff), back = int64_t(w >> 32);
        if (front >= back) return false;
        const int64_t take = std::max<int64_t>(1, (back - front) / 2);
        if (r.front_back.compare_exchange_weak(w, pack_range(uint64_t(front), uint64_t(back - take)),
                                               std::memory_order_acq_rel, std::memory_order_relaxed)) {
            *b = back - take;
            *e = back;
            return true;
        }
    }
}

}  // namespace

void parallel_for_stealing(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    const int64_t grains = (n + grain - 1) / grain;
    const int parts = int(std::min<int64_t>(num_threads(), grains));
    if (t_in_pool || parts <= 1 || grains > INT32_MAX) return run_parts(n, fn, grain, 1);
    std::unique_ptr<StealRange[]> ranges(new StealRange[size_t(parts)]);
    for (int i = 0; i < parts; ++i)
        ranges[i].front_back.store(pack_range(uint64_t(grains * i / parts), uint64_t(grains * (i + 1) / parts)),
                                   std::memory_order_relaxed);
    auto run_grains = [&](int64_t g0, int64_t g1) { fn(g0 * grain, std::min(n, g1 * grain)); };
    run_parts(parts, [&](int64_t p0, int64_t p1) {
        int64_t b, e;
        for (int64_t p = p0; p < p1; ++p)
            while (claim_front(ranges[p], &b, &e)) run_grains(b, e);
        // Own share done: help the range with the most left, from its back, until every range is empty.
        for (;;) {
            int most = -1;
            int64_t most_left = 0;
            for (int i = 0; i < parts; ++i) {
                const uint64_t w = ranges[i].front_back.load(std::memory_order_relaxed);
                const int64_t left = int64_t(w >> 32) - int64_t(w & 0xffffffff);
                if (left > most_left) most = i, most_left = left;
            }
            if (most < 0) return;
            if (claim_back(ranges[most], &b, &e)) run_grains(b, e);
        }
    }, 1, 1);
}

int num_threads() { return pool().size(); }

}  // namespace dg::cpu
