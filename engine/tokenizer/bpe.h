// Byte-pair encoding over token ids: a word's bytes start as single-byte tokens and the lowest-ranked
// adjacent pair is merged (leftmost on ties) until no pair has a merge rule. Results are cached per word.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace dg::tok {

class Bpe {
public:
    struct Merge {
        int32_t left, right, result;
    };
    // `byte_ids[b]`: the token of the single byte b. `merges` in rank order (first = applied first).
    static absl::StatusOr<std::unique_ptr<Bpe>> create(const std::array<int32_t, 256>& byte_ids,
                                                       const std::vector<Merge>& merges);

    // Appends the tokens of one pre-token (raw bytes) to `out`. Thread-safe.
    void encode_word(std::string_view bytes, std::vector<int32_t>& out) const;
    // The same without touching the cache (tests and the cache-off benchmark use it).
    void encode_word_uncached(std::string_view bytes, std::vector<int32_t>& out) const;

    size_t merge_count() const { return merges_.size(); }

    // Words longer than this skip the cache: they rarely repeat and would crowd out the short ones.
    static constexpr size_t kMaxCachedWord = 64;

private:
    struct Rule {
        int32_t rank, result;
    };
    static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
    const Rule* find(int32_t a, int32_t b) const {
        auto it = merges_.find(key(a, b));
        return it == merges_.end() ? nullptr : &it->second;
    }
    void merge_short(std::vector<int32_t>& ids) const;
    void merge_long(std::vector<int32_t>& ids) const;

    std::array<int32_t, 256> byte_ids_{};
    absl::flat_hash_map<uint64_t, Rule> merges_;

    // Sharded so that concurrent requests rarely contend; a full shard is simply cleared.
    static constexpr size_t kShards = 16, kShardCapacity = 8192;
    struct Shard {
        std::mutex mu;
        absl::flat_hash_map<std::string, std::vector<int32_t>> words;
    };
    mutable std::array<Shard, kShards> cache_;
};

}  // namespace dg::tok
