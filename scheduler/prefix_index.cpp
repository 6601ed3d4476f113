#include "scheduler/prefix_index.h"

#include <algorithm>

#include "scheduler/prefix_hash.h"

namespace dg::sched {

PrefixMatch find_prefix(std::span<const int32_t> tokens, int32_t max_pos, uint64_t cache_salt,
                        const KvBlockPool& pool, const StateCache& cache) {
    const int32_t bt = pool.block_tokens();
    PrefixMatch best;
    std::vector<int32_t> chain;    // cached full blocks found so far, in order (-1: in host RAM)
    std::vector<uint64_t> hashes;  // their chain hashes
    PrefixHasher h(cache_salt, bt);
    max_pos = std::min<int32_t>(max_pos, int32_t(tokens.size()));
    for (int32_t p = 1; p <= max_pos; ++p) {
        const uint64_t parent = h.chain();
        h.push(tokens[p - 1]);
        if (h.block_completed()) {
            // The block ending at p must be cached, or no later position can be used.
            const auto block_tokens = tokens.subspan(p - bt, bt);
            const int32_t b = pool.find(h.chain(), parent, block_tokens);
            // Every later position (and p itself) needs the K/V of [p - bt, p): stop at the first miss.
            if (b < 0 && !cache.has_host_block(h.chain(), parent, block_tokens)) break;
            chain.push_back(b);
            hashes.push_back(h.chain());
        }
        if (const Checkpoint* c = cache.find(h.checkpoint_key()); c && c->pos == p) {
            best.pos = p;
            best.checkpoint_key = c->key;
            best.checkpoint = c;
            best.blocks.assign(chain.begin(), chain.begin() + p / bt);
            best.hashes.assign(hashes.begin(), hashes.begin() + p / bt);
            best.n_host_blocks = int32_t(std::count(best.blocks.begin(), best.blocks.end(), -1));
        }
    }
    return best;
}

}  // namespace dg::sched
