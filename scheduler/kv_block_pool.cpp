#include "scheduler/kv_block_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/status.h"

namespace dg::sched {

KvBlockPool::KvBlockPool(int32_t n_blocks, int32_t block_tokens) : block_tokens_(block_tokens), blocks_(n_blocks) {
    free_.reserve(n_blocks);
    for (int32_t b = n_blocks - 1; b >= 0; --b) free_.push_back(b);
}

std::optional<int32_t> KvBlockPool::allocate() {
    int32_t b = -1;
    if (!free_.empty()) {
        b = free_.back();
        free_.pop_back();
    } else if (!lru_.empty()) {
        b = lru_.front();
        lru_.pop_front();
        // Out of every list while the hook runs: what it releases cannot hand b out a second time.
        blocks_[b].refs = 1;
        if (evict_hook_) evict_hook_(b);
        unpublish(b);
        ++evicted_;
    } else {
        return std::nullopt;
    }
    blocks_[b].refs = 1;
    return b;
}

void KvBlockPool::ref(int32_t b) {
    Block& k = blocks_[b];
    DG_CHECK(k.refs > 0 || k.published, "ref of free block %d", b);
    if (k.refs == 0) lru_.erase(k.lru);
    ++k.refs;
}

void KvBlockPool::unref(int32_t b) {
    Block& k = blocks_[b];
    DG_CHECK(k.refs > 0, "unref of unreferenced block %d", b);
    if (--k.refs > 0) return;
    if (k.published) {
        k.lru = lru_.insert(lru_.end(), b);
    } else {
        free_.push_back(b);
    }
}

bool KvBlockPool::publish(int32_t b, uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) {
    Block& k = blocks_[b];
    DG_CHECK(k.refs > 0 && !k.published && int32_t(tokens.size()) == block_tokens_, "bad publish of block %d", b);
    if (by_hash_.contains(hash)) return false;
    k.published = true;
    k.hash = hash;
    k.parent = parent;
    k.tokens.assign(tokens.begin(), tokens.end());
    by_hash_[hash] = b;
    return true;
}

int32_t KvBlockPool::find(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) const {
    auto it = by_hash_.find(hash);
    if (it == by_hash_.end()) return -1;
    const Block& k = blocks_[it->second];
    if (k.parent != parent || !std::equal(tokens.begin(), tokens.end(), k.tokens.begin(), k.tokens.end())) return -1;
    return it->second;
}

void KvBlockPool::unpublish(int32_t b) {
    Block& k = blocks_[b];
    by_hash_.erase(k.hash);
    k.published = false;
    k.tokens.clear();
}

absl::Status KvBlockPool::check(const std::vector<int32_t>* expected_refs) const {
    std::vector<int> seen(blocks_.size(), 0);
    for (int32_t b : free_) {
        if (blocks_[b].refs != 0 || blocks_[b].published) return absl::InternalError(absl::StrCat("free block ", b, " is in use"));
        ++seen[b];
    }
    for (int32_t b : lru_) {
        if (blocks_[b].refs != 0 || !blocks_[b].published)
            return absl::InternalError(absl::StrCat("cached block ", b, " is referenced or unpublished"));
        ++seen[b];
    }
    for (size_t b = 0; b < blocks_.size(); ++b) {
        const Block& k = blocks_[b];
        if (k.refs > 0) ++seen[b];
        if (seen[b] != 1) return absl::InternalError(absl::StrCat("block ", b, " is in ", seen[b], " states"));
        if (k.published) {
            auto it = by_hash_.find(k.hash);
            if (it == by_hash_.end() || it->second != int32_t(b))
                return absl::InternalError(absl::StrCat("published block ", b, " is not indexed"));
        }
        if (expected_refs && (*expected_refs)[b] != k.refs)
            return absl::InternalError(absl::StrCat("block ", b, " has ", k.refs, " refs, its holders count ",
                                                    (*expected_refs)[b]));
    }
    for (const auto& [h, b] : by_hash_)
        if (!blocks_[b].published || blocks_[b].hash != h) return absl::InternalError("hash index names a stale block");
    return absl::OkStatus();
}

}  // namespace dg::sched
