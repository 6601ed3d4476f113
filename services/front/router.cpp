#include "services/front/router.h"

#include <algorithm>
#include <limits>

#include "scheduler/prefix_hash.h"

namespace dg::front {

int32_t longest_cached_prefix(std::span<const int32_t> prompt, uint64_t cache_salt, int32_t block_tokens,
                              const CheckpointDigest& digest) {
    if (digest.empty() || block_tokens <= 0) return 0;
    int32_t deepest = 0;
    for (const auto& [key, pos] : digest) deepest = std::max(deepest, pos);
    const size_t limit = std::min(prompt.size(), size_t(deepest));
    sched::PrefixHasher h(cache_salt, block_tokens);
    int32_t best = 0;
    for (size_t i = 0; i < limit; ++i) {
        h.push(prompt[i]);
        auto it = digest.find(h.checkpoint_key());
        if (it != digest.end() && it->second == h.pos()) best = h.pos();
    }
    return best;
}

RouteChoice choose_worker(std::span<const WorkerView> workers, std::span<const int32_t> prompt, uint64_t cache_salt,
                          int sticky, std::span<const int> exclude, const RouteOptions& opt) {
    auto usable = [&](const WorkerView& w) {
        return w.healthy && !w.draining && std::find(exclude.begin(), exclude.end(), w.id) == exclude.end();
    };
    for (const auto& w : workers)
        if (w.id == sticky && usable(w)) {
            const int32_t cached = w.digest ? longest_cached_prefix(prompt, cache_salt, w.block_tokens, *w.digest) : 0;
            return {w.id, cached, "session"};
        }
    RouteChoice best;
    double best_cost = std::numeric_limits<double>::infinity();
    int32_t best_load = 0;
    for (const auto& w : workers) {
        if (!usable(w)) continue;
        const int32_t cached = w.digest ? longest_cached_prefix(prompt, cache_salt, w.block_tokens, *w.digest) : 0;
        const int32_t load = w.running + w.waiting + w.inflight;
        const double cost = double(int64_t(prompt.size()) - cached) + opt.load_penalty_tokens * load;
        // Ties go to the less loaded worker, then to the lower id (deterministic for tests).
        if (cost < best_cost || (cost == best_cost && load < best_load)) {
            best_cost = cost;
            best_load = load;
            best = {w.id, cached, cached > 0 ? "prefix" : "load"};
        }
    }
    return best;
}

uint64_t salt_from_string(const std::string& s) {
    if (s.empty()) return 0;
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a: stable across processes and builds
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h == 0 ? 1 : h;
}

std::string SessionTable::get(const std::string& session) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = map_.find(session);
    if (it == map_.end()) return {};
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
}

void SessionTable::put(const std::string& session, const std::string& worker) {
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = map_.find(session); it != map_.end()) {
        it->second->second = worker;
        lru_.splice(lru_.begin(), lru_, it->second);
        return;
    }
    lru_.emplace_front(session, worker);
    map_[session] = lru_.begin();
    if (map_.size() > capacity_) {
        map_.erase(lru_.back().first);
        lru_.pop_back();
    }
}

size_t SessionTable::size() const {
    std::lock_guard<std::mutex> l(mu_);
    return map_.size();
}

}  // namespace dg::front
