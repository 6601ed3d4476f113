// Stable 64-bit hashes of token prefixes. Full KV blocks are chained: hash(block i) = H(hash(block i-1),
// tokens of block i), rooted at the request's cache salt, so equal prefixes (and only those) meet in the
// KV pool. A checkpoint at any position p is keyed by H(hash of the full blocks before p, the tail
// tokens, p). The functions are fixed (no per-process seed) so a front can compute the same keys from
// token ids to route by the digests workers publish; the keys depend on the worker's block size.
#pragma once

#include <cstdint>
#include <span>

namespace dg::sched {

// splitmix64's finaliser: a full-avalanche bijection on 64 bits (also seeds deltagate bench's workloads).
uint64_t splitmix64(uint64_t x);

uint64_t hash_root(uint64_t cache_salt);

// Walks a token sequence one token at a time, keeping the chain hash of the completed blocks and the
// running hash of the partial tail.
class PrefixHasher {
public:
    PrefixHasher(uint64_t cache_salt, int32_t block_tokens);

    void push(int32_t token);
    void push(std::span<const int32_t> tokens) {
        for (int32_t t : tokens) push(t);
    }
    int32_t pos() const { return pos_; }
    // Hash of the full blocks so far: the parent of the next block.
    uint64_t chain() const { return chain_; }
    // Set by push() when that token completed a block: that block's hash (== chain()).
    bool block_completed() const { return pos_ > 0 && pos_ % block_tokens_ == 0; }
    // Key of a checkpoint of the prefix seen so far.
    uint64_t checkpoint_key() const;

private:
    int32_t block_tokens_;
    int32_t pos_ = 0;
    uint64_t chain_;  // hash of blocks [0, pos_ / block_tokens_)
    uint64_t tail_;   // running hash of the tail tokens, seeded with chain_
};

}  // namespace dg::sched
