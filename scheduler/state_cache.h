// The caches beyond the device KV pool: checkpoints of the recurrent state, and the host-RAM tier of KV
// blocks. A checkpoint maps (prefix key at token position p) → a copy of every GDN layer's conv + S
// state after p tokens. Tier 1 is a spare device slot (backend state_copy, no host traffic); tier 2 is
// host RAM (state_download / state_upload). KV blocks the device pool evicts (cached, refs == 0) are
// downloaded into the same host RAM (kv_download_block) and uploaded back by a later prefix hit instead of
// being recomputed. Tier-2 states, spilled KV blocks and spilled tail blocks share ONE byte budget.
//
// What to keep is decided by value, not recency alone (docs/scheduler.md, "Checkpoint valuation"): a
// checkpoint is worth the tokens a resume from it skips (its position), far less once a longer checkpoint
// on the same token path supersedes it, more while its session is live, and nothing once a KV block
// before it is gone; a host KV block is worth the most valuable checkpoint that needs it. Under pressure
// the least valuable entry goes first (ties: least recently used). CheckpointPolicy::kLru keeps the
// plain LRU order for comparison.
//
// When p is not on a block boundary the checkpoint also holds the KV block with positions
// [p - p % block_tokens, p): either a reference to the device block (the owning sequence may still write
// positions >= p into it; positions < p never change, and a resuming sequence copies it with
// kv_copy_block before writing) or, once KV pressure pushed it out, a host copy of its K/V.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "engine/backend.h"
#include "scheduler/kv_block_pool.h"
#include "scheduler/state_slot_pool.h"

namespace dg::sched {

enum class Tier { kDevice, kHost };
enum class CheckpointPolicy { kValue, kLru };

struct StateCacheOptions {
    int64_t host_budget_bytes = int64_t(256) << 20;  // tier-2 states + spilled KV blocks
    CheckpointPolicy policy = CheckpointPolicy::kValue;
    bool spill_kv = true;                            // false: evicted KV blocks are dropped (recomputed)
    std::chrono::milliseconds session_ttl{600000};   // a session is live this long after its last request
};

// What the loop knows about a checkpoint beyond its state.
struct CheckpointMeta {
    uint64_t chain = 0;     // chain hash of the pos / block_tokens full blocks before pos
    uint64_t session = 0;   // the request's session id (0: none)
    bool hinted = false;    // a client hint (Request::checkpoint_at) asked for this position
    bool path_end = true;   // prompt end, generation end or preemption (not a periodic position)
};

struct Checkpoint {
    uint64_t key = 0;
    int32_t pos = 0;                 // tokens covered
    uint64_t chain = 0;              // CheckpointMeta::chain: walks back through the blocks it needs
    Tier tier = Tier::kDevice;
    int32_t slot = -1;               // tier 1: spare slot holding the state
    std::vector<float> host;         // tier 2: [state_floats]
    int32_t tail_block = -1;         // referenced block with positions [pos - pos % bt, pos), or -1
    std::vector<uint8_t> host_tail;  // or those positions' K/V in host RAM (kv_block_bytes), or empty
    uint64_t session = 0;
    bool hinted = false;
    bool path_end = true;            // CheckpointMeta::path_end
    bool extended = false;           // a longer checkpoint on the same token path was taken after it
    int32_t hits = 0;                // restores
    int32_t awaited = 0;             // waiting sequences that will resume from it (await / unawait)
    uint64_t last_use = 0;           // logical clock of the last put / restore (recency order, with blocks)
    uint64_t epoch = 0;              // checkpoint clock (puts and restores only) then: its age
    // Extended, at a position only its own continuation reached, and not a branching point (a hint, or
    // restored more than once): a later request on this path resumes from the longer one.
    bool superseded() const { return extended && path_end && !hinted && hits <= 1 && awaited == 0; }
};

// A KV block in host RAM, keyed by its chain hash (as in the device pool).
struct HostBlock {
    uint64_t parent = 0;
    std::vector<int32_t> tokens;  // verifies hash hits
    std::vector<uint8_t> kv;      // Backend::kv_download_block bytes
    uint64_t last_use = 0;
};

struct StateCacheStats {
    int64_t puts = 0, spills = 0, drops = 0, device_hits = 0, host_hits = 0, promotions = 0;
    // KV blocks: evicted blocks saved to host RAM, uploaded back, evicted blocks lost (budget, or spill
    // off), host blocks dropped to make room; checkpoint tail blocks moved to host RAM.
    int64_t block_spills = 0, block_restores = 0, block_lost = 0, block_drops = 0, tail_spills = 0;
};

class StateCache {
public:
    StateCache(Backend* backend, StateSlotPool* slots, KvBlockPool* blocks, const StateCacheOptions& opt);
    ~StateCache();

    // Checkpoints `src_slot`, which holds the state after `pos` tokens whose prefix key is `key`; refs
    // `tail_block` when >= 0. An existing key is only touched. Returns where it landed, or nullopt when
    // it could not be kept (no spare slots and a host budget too small for one state).
    std::optional<Tier> put(uint64_t key, int32_t pos, int32_t src_slot, int32_t tail_block, const CheckpointMeta& meta);
    const Checkpoint* find(uint64_t key) const;
    // Copies the checkpoint's state into `dst_slot`, counts a hit and marks it used. Returns the tier it
    // came from; a host checkpoint moves to a spare slot if one is free (promotion).
    Tier restore(uint64_t key, int32_t dst_slot);
    void drop(uint64_t key);
    // A longer checkpoint on the same token path now exists (the sequence's previous checkpoint, or the
    // one it resumed from).
    void mark_extended(uint64_t key);
    // A waiting sequence (preempted, or a fork child without a slot) will resume from this checkpoint: a
    // certain hit, worth far more than a possible one until it happens. Counted; unknown keys are ignored.
    void await(uint64_t key);
    void unawait(uint64_t key);
    // KV pressure: frees the device tail block of the least valuable checkpoint that is its last holder,
    // moving its K/V to host RAM when the budget allows, else dropping the checkpoint. False if none.
    bool release_one_tail();

    // KvBlockPool's evict hook: saves the published block `b` to host RAM (when spill_kv and the budget
    // allow; an equal block already there is only touched).
    void spill_block(int32_t b);
    // Whether host RAM holds the block with this hash, parent and tokens (a collision is a miss).
    bool has_host_block(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) const;
    // Takes a host block out (for an upload into a device block): the caller owns its bytes.
    HostBlock take_block(uint64_t hash);
    void note_block_restored() { ++stats_.block_restores; }

    // A request of this session arrived or finished: its checkpoints count as live for session_ttl.
    void touch_session(uint64_t session);

    int32_t n_device() const { return n_device_; }
    int32_t n_host() const { return int32_t(entries_.size()) - n_device_; }
    int32_t n_host_blocks() const { return int32_t(host_blocks_.size()); }
    int64_t host_bytes() const { return host_bytes_; }
    int64_t host_budget() const { return opt_.host_budget_bytes; }
    int64_t state_bytes() const { return state_bytes_; }
    int64_t block_bytes() const { return block_bytes_; }
    const StateCacheOptions& options() const { return opt_; }
    const StateCacheStats& stats() const { return stats_; }
    const std::unordered_map<uint64_t, Checkpoint>& entries() const { return entries_; }
    // The value the eviction order uses (0 under kLru, or when a block before the checkpoint is gone).
    double value(uint64_t key) const;

    absl::Status check() const;

private:
    using Clock = std::chrono::steady_clock;
    struct Valuation {
        absl::flat_hash_map<uint64_t, double> ckpt;   // by checkpoint key
        absl::flat_hash_map<uint64_t, double> block;  // host blocks, by hash
    };
    Valuation valuate() const;  // block: host AND device blocks on some checkpoint's chain
    double base_value(const Checkpoint& c, Clock::time_point now) const;
    // Makes room for `bytes` more in host RAM for an entry worth `incoming` (computed from the fresh
    // valuation), evicting only entries worth no more than it and never checkpoint `keep` (kLru: any
    // entry). False when that cannot free enough.
    bool make_host_room(int64_t bytes, uint64_t keep, const std::function<double(const Valuation&)>& incoming);
    void spill_one();  // least valuable tier-1 checkpoint → tier 2 (or dropped)
    void promote();    // fills free spare slots with the most valuable host checkpoints
    void to_device(Checkpoint& c, int32_t slot);
    void erase(Checkpoint& c);
    int64_t entry_host_bytes(const Checkpoint& c) const;

    Backend* be_;
    StateSlotPool* slots_;
    KvBlockPool* blocks_;
    StateCacheOptions opt_;
    int64_t host_bytes_ = 0, state_bytes_, block_bytes_;
    int32_t n_device_ = 0;
    uint64_t tick_ = 0, ckpt_clock_ = 0;
    std::unordered_map<uint64_t, Checkpoint> entries_;
    absl::flat_hash_map<uint64_t, HostBlock> host_blocks_;
    absl::flat_hash_map<uint64_t, Clock::time_point> sessions_;
    StateCacheStats stats_;
};

}  // namespace dg::sched
