#include "scheduler/prefix_hash.h"

namespace dg::sched {

uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

namespace {

uint64_t fmix(uint64_t x) { return splitmix64(x); }
uint64_t combine(uint64_t h, uint64_t v) { return fmix(h ^ fmix(v)); }

// Distinct tags keep block hashes, tail hashes and checkpoint keys from ever being compared equal.
constexpr uint64_t kRootTag = 0x64656c7461676174ull;   // "deltagat"
constexpr uint64_t kBlockTag = 0x626c6f636b000000ull;
constexpr uint64_t kCkptTag = 0x636b707400000000ull;

}  // namespace

uint64_t hash_root(uint64_t cache_salt) { return combine(kRootTag, cache_salt); }

PrefixHasher::PrefixHasher(uint64_t cache_salt, int32_t block_tokens)
    : block_tokens_(block_tokens), chain_(hash_root(cache_salt)), tail_(chain_) {}

void PrefixHasher::push(int32_t token) {
    tail_ = combine(tail_, uint64_t(uint32_t(token)));
    ++pos_;
    if (pos_ % block_tokens_ == 0) {
        chain_ = combine(tail_, kBlockTag);
        tail_ = chain_;
    }
}

uint64_t PrefixHasher::checkpoint_key() const { return combine(combine(tail_, kCkptTag), uint64_t(pos_)); }

}  // namespace dg::sched
