// Finds where a new (or resumed) sequence can start: the longest prefix p of its tokens that has BOTH
// every full KV block before p cached (in the device pool, or in host RAM to be uploaded back) AND a
// checkpoint at exactly p (any position, not only block boundaries). Recurrent state cannot be rolled back, so a longer run of cached KV blocks without
// a checkpoint is worth nothing; a checkpoint whose blocks were evicted is worth nothing either.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "scheduler/kv_block_pool.h"
#include "scheduler/state_cache.h"

namespace dg::sched {

struct PrefixMatch {
    int32_t pos = 0;               // tokens that need no computation (0: cold start)
    // Full cached blocks covering [0, pos - pos % bt), not yet referenced: a device block id, or -1 for
    // a block in host RAM (StateCache::take_block(hashes[i]) gives its K/V).
    std::vector<int32_t> blocks;
    std::vector<uint64_t> hashes;  // chain hash of each (parents: hashes[i - 1], the salt's root for 0)
    int32_t n_host_blocks = 0;
    uint64_t checkpoint_key = 0;   // valid when pos > 0
    const Checkpoint* checkpoint = nullptr;
};

// Considers positions 1..max_pos (callers pass at most tokens.size() - 1: the last token must be
// computed to get logits). Lookup only: takes no references.
PrefixMatch find_prefix(std::span<const int32_t> tokens, int32_t max_pos, uint64_t cache_salt,
                        const KvBlockPool& pool, const StateCache& cache);

}  // namespace dg::sched
