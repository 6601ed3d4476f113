// Checkpoints of the recurrent state: (prefix key at token position p) → a copy of every GDN layer's
// conv + S state after p tokens. Tier 1 is a spare device slot (backend state_copy, no host traffic);
// tier 2 is host RAM under a byte budget (state_download / state_upload). Both tiers are LRU; a new
// checkpoint that finds no spare slot spills the least recently used tier-1 checkpoint to tier 2, and
// tier 2 drops its least recently used entries to stay under the budget.
//
// When p is not on a block boundary the checkpoint also holds a reference to the KV block that holds
// positions [p - p % block_tokens, p): the state alone is useless without the K/V of every position
// before p, and those tail positions are in no full (shared) block. The block may still be written at
// positions >= p by the sequence that owns it; positions < p never change, and a sequence resuming from
// the checkpoint copies the block (backend kv_copy_block) before writing its own positions.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "engine/backend.h"
#include "scheduler/kv_block_pool.h"
#include "scheduler/state_slot_pool.h"

namespace dg::sched {

enum class Tier { kDevice, kHost };

struct Checkpoint {
    uint64_t key = 0;
    int32_t pos = 0;              // tokens covered
    Tier tier = Tier::kDevice;
    int32_t slot = -1;            // tier 1: spare slot holding the state
    std::vector<float> host;      // tier 2: [state_floats]
    int32_t tail_block = -1;      // referenced block with positions [pos - pos % bt, pos), or -1
    std::list<uint64_t>::iterator lru;
};

struct StateCacheStats {
    int64_t puts = 0, spills = 0, drops = 0, device_hits = 0, host_hits = 0;
};

class StateCache {
public:
    StateCache(Backend* backend, StateSlotPool* slots, KvBlockPool* blocks, int64_t host_budget_bytes);
    ~StateCache();

    // Checkpoints `src_slot`, which holds the state after `pos` tokens whose prefix key is `key`; refs
    // `tail_block` when >= 0. An existing key is only touched. Returns where it landed, or nullopt when
    // it could not be kept (no spare slots and a host budget too small for one state).
    std::optional<Tier> put(uint64_t key, int32_t pos, int32_t src_slot, int32_t tail_block);
    const Checkpoint* find(uint64_t key) const;
    // Copies the checkpoint's state into `dst_slot` and marks it most recently used. Returns its tier.
    Tier restore(uint64_t key, int32_t dst_slot);
    void drop(uint64_t key);
    // KV pressure: drops the least recently used checkpoint that is the last holder of its tail block,
    // freeing that block. False if there is none.
    bool drop_one_with_tail();

    int32_t n_device() const { return int32_t(lru_[0].size()); }
    int32_t n_host() const { return int32_t(lru_[1].size()); }
    int64_t host_bytes() const { return host_bytes_; }
    int64_t host_budget() const { return host_budget_; }
    const StateCacheStats& stats() const { return stats_; }
    const std::unordered_map<uint64_t, Checkpoint>& entries() const { return entries_; }

    absl::Status check() const;

private:
    std::list<uint64_t>& lru(Tier t) { return lru_[int(t)]; }
    // Makes room for `bytes` more in tier 2; false when the budget can never hold them.
    bool make_host_room(int64_t bytes);
    void spill_one();  // least recently used tier-1 checkpoint → tier 2 (or dropped)
    void erase(Checkpoint& c);

    Backend* be_;
    StateSlotPool* slots_;
    KvBlockPool* blocks_;
    int64_t host_budget_, host_bytes_ = 0, state_bytes_;
    std::unordered_map<uint64_t, Checkpoint> entries_;
    std::list<uint64_t> lru_[2];  // per tier, front = least recently used
    StateCacheStats stats_;
};

}  // namespace dg::sched
