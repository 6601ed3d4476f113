// engine/cpu/parallel: the CPU backend's thread pool. Every index is covered exactly once, chunks respect
// min_chunk and the thread count, many tiny calls in a row (a decode step's pattern) stay correct, nested
// calls run inline, an exception in a chunk reaches the caller and leaves the pool usable, calls from
// several threads at once are serialised, and a process with a pool (idle or just used) exits cleanly.
// parallel_for_stealing: the same cover on grain boundaries, and a stalled thread's range finished by the others.
// Nothing here measures time.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "engine/cpu/parallel.h"

namespace dg {
namespace {

// Runs one parallel_for (per_thread 0) or parallel_for_balanced and checks its chunks: disjoint, covering
// [0, n), at most num_threads() x per_thread, each of at least min(n, min_chunk) indices.
void check_cover(int64_t n, int64_t min_chunk, int per_thread = 0) {
    std::vector<std::atomic<int>> hits(size_t(std::max<int64_t>(n, 0)));
    std::mutex mu;
    std::vector<std::pair<int64_t, int64_t>> chunks;
    auto body = [&](int64_t b, int64_t e) {
        {
            std::lock_guard<std::mutex> lk(mu);
            chunks.emplace_back(b, e);
        }
        for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
    };
    if (per_thread == 0) cpu::parallel_for(n, body, min_chunk);
    else cpu::parallel_for_balanced(n, body, per_thread, min_chunk);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "n=" << n << " index " << i;
    if (n <= 0) {
        EXPECT_TRUE(chunks.empty());
        return;
    }
    EXPECT_LE(int64_t(chunks.size()), int64_t(cpu::num_threads()) * std::max(per_thread, 1)) << "n=" << n;
    for (auto [b, e] : chunks) {
        EXPECT_LT(b, e);
        EXPECT_GE(e - b, std::min(n, std::max<int64_t>(min_chunk, 1))) << "n=" << n << " min_chunk=" << min_chunk;
    }
}

TEST(ParallelFor, CoversEveryIndexOnce) {
    EXPECT_GE(cpu::num_threads(), 1);
    for (int64_t n : {-3, 0, 1, 2, 3, 7, 16, 17, 63, 64, 65, 1000, 4099})
        for (int64_t min_chunk : {0, 1, 2, 16, 64, 5000}) check_cover(n, min_chunk);
}

TEST(ParallelFor, BalancedCoversEveryIndexOnce) {
    for (int64_t n : {1, 7, 64, 65, 1000, 4099})
        for (int64_t min_chunk : {1, 16, 5000})
            for (int per_thread : {1, 4, 64}) check_cover(n, min_chunk, per_thread);
}

TEST(ParallelFor, ManySmallCallsInARow) {
    // A decode step is hundreds of short ops back to back; this is thousands of them, each index a little
    // work so that workers take chunks too (not only the caller).
    std::vector<int64_t> out(64);
    int64_t expect = 0;
    for (int call = 0; call < 20000; ++call) {
        const int64_t n = 1 + call % 64;
        cpu::parallel_for(n, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
                volatile int64_t spin = 0;
                for (int k = 0; k < 50; ++k) spin = spin + k;
                out[size_t(i)] += i + call;
            }
        });
        for (int64_t i = 0; i < n; ++i) expect += i + call;
    }
    int64_t sum = 0;
    for (int64_t v : out) sum += v;
    EXPECT_EQ(sum, expect);
}

TEST(ParallelFor, NestedCallsRunAndCover) {
    constexpr int64_t kOuter = 8, kInner = 100;
    std::vector<std::atomic<int>> hits(kOuter * kInner);
    cpu::parallel_for(kOuter, [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o)
            cpu::parallel_for(kInner, [&](int64_t ib, int64_t ie) {
                for (int64_t i = ib; i < ie; ++i) hits[size_t(o * kInner + i)].fetch_add(1);
            });
    });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
}

TEST(ParallelFor, ExceptionReachesCallerAndPoolStaysUsable) {
    for (int64_t bad : {int64_t(0), int64_t(99)}) {  // the caller's own chunk, and the last chunk
        std::atomic<int64_t> done{0};
        EXPECT_THROW(cpu::parallel_for(100, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
                if (i == bad) throw std::runtime_error("chunk failed");
                done.fetch_add(1);
            }
        }), std::runtime_error);
        EXPECT_LT(done.load(), 100);
        check_cover(1000, 1);  // still works afterwards
    }
    // Inline (one chunk) too.
    EXPECT_THROW(cpu::parallel_for(1, [](int64_t, int64_t) { throw std::runtime_error("x"); }), std::runtime_error);
}

TEST(ParallelFor, CallsFromSeveralThreads) {
    constexpr int kThreads = 4, kCalls = 2000;
    std::vector<int64_t> sums(kThreads, 0);
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t)
        ts.emplace_back([&, t] {
            for (int c = 0; c < kCalls; ++c) {
                std::atomic<int64_t> s{0};
                cpu::parallel_for(37 + t, [&](int64_t b, int64_t e) {
                    int64_t local = 0;
                    for (int64_t i = b; i < e; ++i) local += i;
                    s.fetch_add(local);
                });
                sums[size_t(t)] += s.load();
            }
        });
    for (auto& th : ts) th.join();
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(sums[size_t(t)], int64_t(kCalls) * (36 + t) * (37 + t) / 2);
}

// parallel_for_stealing: every index once, each call on grain boundaries (the last may end at n).
void check_stealing_cover(int64_t n, int64_t grain) {
    std::vector<std::atomic<int>> hits(size_t(std::max<int64_t>(n, 0)));
    std::atomic<bool> on_grain{true};
    cpu::parallel_for_stealing(n, [&](int64_t b, int64_t e) {
        const int64_t g = std::max<int64_t>(grain, 1);
        if (b >= e || b % g != 0 || (e % g != 0 && e != n)) on_grain.store(false);
        for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
    }, grain);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "n=" << n << " grain=" << grain << " index " << i;
    EXPECT_TRUE(on_grain.load()) << "n=" << n << " grain=" << grain;
}

TEST(ParallelFor, StealingCoversEveryIndexOnce) {
    for (int64_t n : {-3, 0, 1, 2, 3, 7, 16, 17, 63, 64, 65, 1000, 4099, 1 << 20})
        for (int64_t grain : {0, 1, 2, 16, 64, 5000}) check_stealing_cover(n, grain);
    for (int call = 0; call < 3000; ++call) check_stealing_cover(1 + call % 300, 1 + call % 7);  // a decode step's pattern
}

// The thread that owns the first range stalls (as a descheduled or slower thread would); the others must
// take the rest of its range from the back instead of waiting for it.
TEST(ParallelFor, StealingTakesOverAStalledThreadsRange) {
    if (cpu::num_threads() < 2) GTEST_SKIP() << "one pool thread: nothing to steal from";
    constexpr int64_t kN = 1000;
    std::vector<std::atomic<int>> hits(kN);
    std::mutex mu;
    std::vector<std::pair<std::thread::id, std::pair<int64_t, int64_t>>> calls;
    std::atomic<bool> stalled{false};
    cpu::parallel_for_stealing(kN, [&](int64_t b, int64_t e) {
        {
            std::lock_guard<std::mutex> lk(mu);
            calls.push_back({std::this_thread::get_id(), {b, e}});
        }
        if (b == 0 && !stalled.exchange(true)) {
            // Stall until the others have done the rest of this range (at most 10 s on a loaded machine).
            const int64_t range_end = kN / cpu::num_threads();
            const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
            auto rest_done = [&] {
                for (int64_t i = e; i < range_end; ++i)
                    if (hits[size_t(i)].load() == 0) return false;
                return true;
            };
            while (!rest_done() && std::chrono::steady_clock::now() < give_up)
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
    });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    std::thread::id first_owner;
    int64_t stalled_claim = 0;
    for (const auto& c : calls)
        if (c.second.first == 0) first_owner = c.first, stalled_claim = c.second.second;
    const int64_t first_range_end = kN / cpu::num_threads();
    ASSERT_LT(stalled_claim, first_range_end) << "the owner's first claim took its whole range";
    int64_t taken_by_others = 0;
    for (const auto& c : calls)
        if (c.first != first_owner && c.second.first < first_range_end)
            taken_by_others += std::min(c.second.second, first_range_end) - c.second.first;
    // The stalled owner holds its first claim; everything after it in its range is done by the others.
    EXPECT_EQ(taken_by_others, first_range_end - stalled_claim) << "calls: " << calls.size();
}

TEST(ParallelFor, StealingNestedRunsInlineAndErrorsReachTheCaller) {
    std::vector<std::atomic<int>> hits(8 * 100);
    cpu::parallel_for(8, [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o)
            cpu::parallel_for_stealing(100, [&](int64_t ib, int64_t ie) {
                for (int64_t i = ib; i < ie; ++i) hits[size_t(o * 100 + i)].fetch_add(1);
            }, 3);
    });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    EXPECT_THROW(cpu::parallel_for_stealing(1000, [](int64_t b, int64_t e) {
        if (b <= 500 && 500 < e) throw std::runtime_error("claim failed");
    }), std::runtime_error);
    check_stealing_cover(1000, 1);  // the pool still works
}

// In a fresh process (the death-test child re-runs this test alone), so DG_CPU_THREADS is read before the
// pool exists: more threads than this machine's cores, a burst of calls, idle, more calls, then exit,
// which destroys the pool with its workers asleep.
TEST(ParallelFor, ThreadCountFromEnvAndCleanExit) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(
        {
            setenv("DG_CPU_THREADS", "7", 1);
            if (cpu::num_threads() != 7) std::exit(3);
            for (int round = 0; round < 2; ++round) {
                for (int c = 0; c < 5000; ++c) {
                    std::atomic<int64_t> s{0};
                    cpu::parallel_for(70, [&](int64_t b, int64_t e) { s.fetch_add(e - b); }, 10);
                    if (s.load() != 70) std::exit(4);
                    std::atomic<int64_t> t{0};  // 7 ranges on (usually) fewer cores: stealing between them
                    cpu::parallel_for_stealing(700, [&](int64_t b, int64_t e) { t.fetch_add(e - b); }, 3);
                    if (t.load() != 700) std::exit(5);
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let the workers go to sleep
            }
            std::exit(0);
        },
        ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace dg
