#include "scheduler/prefix_index.h"

#include <algorithm>

#include "scheduler/prefix_hash.h"

namespace dg::sched {

PrefixMatch find_prefix(std::span<const int32_t> tokens, int32_t max_pos, uint64_t cache_salt,
                        const KvBlockPool& pool, const StateCache& cache) {
    const int32_t bt = pool.block_tokens();
    PrefixMatch best;
    std::vector<int32_t> chain;  // cached full blocks found so far, in order
    PrefixHasher h(cache_salt, bt);
    max_pos = std::min<int32_t>(max_pos, int32_t(tokens.size()));
    for (int32_t p = 1; p <= max_pos; ++p) {
        const uint64_t parent = h.chain();
        h.push(tokens[p - 1]);
        if (h.block_completed()) {
            // The block ending at p must be cached, or no later position can be used.
            const int32_t b = pool.find(h.chain(), parent, tokens.subspan(p - bt, bt));
            // Every later position (and p itself) needs the K/V of [p - bt, p): stop at the first miss.
            if (b < 0) break;
            chain.push_back(b);
        }
        if (const Checkpoint* c = cache.find(h.checkpoint_key()); c && c->pos == p) {
            best.pos = p;
            best.checkpoint_key = c->key;
            best.checkpoint = c;
            best.blocks.assign(chain.begin(), chain.begin() + p / bt);
        }
    }
    return best;
}

}  // namespace dg::sched
