// The paged KV pool's bookkeeping (the storage itself is in the backend, addressed by the same block
// ids). Every block is in exactly one of three states:
//   referenced  refs > 0: in some sequence's block table and/or held by a checkpoint (its tail block);
//   cached      refs == 0, published: a full block kept for prefix reuse, evictable, in the LRU list;
//   free        refs == 0, unpublished: on the free list.
// Only full blocks are published (keyed by their chain hash, prefix_hash.h), so shared blocks are never
// written again: K/V at a position depend only on the tokens up to it, so equal prefixes have equal
// blocks, and no copy-on-write is needed. A partial block stays private to the sequence writing it.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"

namespace dg::sched {

class KvBlockPool {
public:
    KvBlockPool(int32_t n_blocks, int32_t block_tokens);

    int32_t n_blocks() const { return int32_t(blocks_.size()); }
    int32_t block_tokens() const { return block_tokens_; }
    int32_t n_free() const { return int32_t(free_.size()); }
    int32_t n_cached() const { return int32_t(lru_.size()); }
    // Blocks an allocation can get without touching referenced ones.
    int32_t n_available() const { return n_free() + n_cached(); }
    int64_t n_evicted() const { return evicted_; }

    // A block with refs == 1: from the free list, else the least recently used cached block (which is
    // unpublished first, after the evict hook saw it). nullopt when every block is referenced.
    std::optional<int32_t> allocate();
    // Called by allocate() with a cached block it is about to reuse, while the block is still published
    // and its K/V intact: the host-RAM tier (state_cache.h) downloads it there. The hook may unref other
    // blocks (dropping host checkpoints releases their tail blocks) but must not allocate.
    using EvictHook = std::function<void(int32_t block)>;
    void set_evict_hook(EvictHook hook) { evict_hook_ = std::move(hook); }
    // refs += 1 (a cached block leaves the LRU list).
    void ref(int32_t b);
    // refs -= 1; at 0 a published block becomes cached (most recently used), an unpublished one free.
    void unref(int32_t b);

    // Makes a full, referenced block findable by `hash`. False (block stays private) when another
    // block already has that hash, e.g. two sequences computed the same prefix at once.
    bool publish(int32_t b, uint64_t hash, uint64_t parent, std::span<const int32_t> tokens);
    // The published block with this hash whose parent and tokens match (a hash collision is a miss), or -1.
    int32_t find(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) const;

    int32_t refs(int32_t b) const { return blocks_[b].refs; }
    bool published(int32_t b) const { return blocks_[b].published; }
    // Of a published block: its chain hash, its parent's, and its tokens.
    uint64_t hash(int32_t b) const { return blocks_[b].hash; }
    uint64_t parent(int32_t b) const { return blocks_[b].parent; }
    std::span<const int32_t> tokens(int32_t b) const { return blocks_[b].tokens; }
    // The published block with this hash (no token check: for walking chains already verified), or -1.
    int32_t find_hash(uint64_t hash) const {
        auto it = by_hash_.find(hash);
        return it == by_hash_.end() ? -1 : it->second;
    }

    // Internal consistency (states, lists, hash map); `expected_refs` (per block) when given.
    absl::Status check(const std::vector<int32_t>* expected_refs = nullptr) const;

private:
    struct Block {
        int32_t refs = 0;
        bool published = false;
        uint64_t hash = 0, parent = 0;
        std::vector<int32_t> tokens;     // [block_tokens] when published: verifies hash hits
        std::list<int32_t>::iterator lru;  // valid when cached
    };
    void unpublish(int32_t b);

    int32_t block_tokens_;
    std::vector<Block> blocks_;
    std::vector<int32_t> free_;       // stack: lowest ids handed out first
    std::list<int32_t> lru_;          // cached blocks, front = least recently used
    absl::flat_hash_map<uint64_t, int32_t> by_hash_;
    int64_t evicted_ = 0;
    EvictHook evict_hook_;
};

}  // namespace dg::sched
