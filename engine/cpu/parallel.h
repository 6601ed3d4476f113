// A small persistent thread pool for the CPU backend: parallel_for over an index range, blocking until
// every chunk is done. Threads default to the hardware's; DG_CPU_THREADS overrides.
#pragma once

#include <cstdint>
#include <functional>

namespace dg::cpu {

// Calls fn(begin, end) over disjoint chunks covering [0, n). Runs inline when n is small or a single
// thread is configured. Not re-entrant: fn must not call parallel_for.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);
int num_threads();

}  // namespace dg::cpu
