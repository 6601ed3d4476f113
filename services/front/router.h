// Worker choice for one request, as a pure function of what the workers last published (no I/O, so
// it is unit-tested directly). A worker's cost for a prompt is the prompt tokens it would still have to
// compute (the prompt minus its longest cached prefix) plus a per-queued-request penalty; the cheapest
// healthy worker wins. A session id sticks to the worker that served it while that worker is healthy.
#pragma once

#include <cstdint>
#include <memory>
#include <list>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace dg::front {

// The checkpoints a worker holds: prefix key (scheduler/prefix_hash.h) -> token position.
using CheckpointDigest = absl::flat_hash_map<uint64_t, int32_t>;

struct WorkerView {
    int id = 0;                 // index into the caller's worker list
    bool healthy = false;
    bool draining = false;
    int32_t block_tokens = 16;  // the worker's KV block size: its prefix keys depend on it
    int32_t running = 0, waiting = 0;
    int32_t inflight = 0;       // requests this front has sent it and not seen finish (reports lag)
    // Shared, not borrowed: the worker's watch thread replaces its digest at every load report, while a
    // routing decision may still be reading the previous one.
    std::shared_ptr<const CheckpointDigest> digest;
};

struct RouteOptions {
    // Cost of one request already queued or running, in prompt tokens to compute. Larger = spread load
    // more, smaller = chase cache hits harder.
    double load_penalty_tokens = 256;
};

struct RouteChoice {
    int id = -1;                 // -1: no healthy worker
    int32_t cached_tokens = 0;   // the chosen worker's longest cached prefix of the prompt
    const char* reason = "none"; // "session" | "prefix" | "load"
};

// Longest prefix of `prompt` (in tokens, at most prompt.size()) whose checkpoint key is in `digest`.
int32_t longest_cached_prefix(std::span<const int32_t> prompt, uint64_t cache_salt, int32_t block_tokens,
                              const CheckpointDigest& digest);

// `sticky`: the session's worker (-1 for none); `exclude`: workers already tried by this request.
RouteChoice choose_worker(std::span<const WorkerView> workers, std::span<const int32_t> prompt, uint64_t cache_salt,
                          int sticky, std::span<const int> exclude, const RouteOptions& opt = {});

// The public cache_salt string as the worker's 64-bit salt (0 for empty: the shared pool).
uint64_t salt_from_string(const std::string& s);

// session id -> worker address, LRU-bounded so a stream of one-off session ids cannot grow it forever.
class SessionTable {
public:
    explicit SessionTable(size_t capacity = 100000) : capacity_(capacity) {}
    std::string get(const std::string& session) const;
    void put(const std::string& session, const std::string& worker);
    size_t size() const;

private:
    size_t capacity_;
    mutable std::mutex mu_;
    mutable std::list<std::pair<std::string, std::string>> lru_;  // front = most recent
    std::unordered_map<std::string, std::list<std::pair<std::string, std::string>>::iterator> map_;
};

}  // namespace dg::front
