#include "engine/tokenizer/bpe.h"

#include <algorithm>
#include <queue>

#include <functional>
#include "absl/strings/str_format.h"

namespace dg::tok {

absl::StatusOr<std::unique_ptr<Bpe>> Bpe::create(const std::array<int32_t, 256>& byte_ids,
                                                 const std::vector<Merge>& merges) {
    auto bpe = std::unique_ptr<Bpe>(new Bpe());
    bpe->byte_ids_ = byte_ids;
    bpe->merges_.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
        const Merge& m = merges[r];
        // A duplicated pair keeps its first (lowest) rank, as the reference implementations do.
        bpe->merges_.try_emplace(key(m.left, m.right), Rule{static_cast<int32_t>(r), m.result});
    }
    return bpe;
}

// Quadratic but allocation-free and cache-friendly: the right choice for ordinary words.
void Bpe::merge_short(std::vector<int32_t>& ids) const {
    constexpr int32_t kNone = INT32_MAX;
    size_t n = ids.size();
    int32_t ranks[kMaxCachedWord * 4];
    int32_t results[kMaxCachedWord * 4];
    for (size_t i = 0; i + 1 < n; ++i) {
        const Rule* r = find(ids[i], ids[i + 1]);
        ranks[i] = r ? r->rank : kNone;
        results[i] = r ? r->result : -1;
    }
    while (n > 1) {
        size_t best = 0;
        int32_t best_rank = kNone;
        for (size_t i = 0; i + 1 < n; ++i)
            if (ranks[i] < best_rank) {
                best_rank = ranks[i];
                best = i;
            }
        if (best_rank == kNone) break;
        ids[best] = results[best];
        // Drop symbol best+1 and its pair slot.
        for (size_t i = best + 1; i + 1 < n; ++i) {
            ids[i] = ids[i + 1];
            ranks[i] = ranks[i + 1];
            results[i] = results[i + 1];
        }
        --n;
        ids.resize(n);
        for (size_t i : {best - 1, best}) {  // best - 1 wraps when best == 0; the bound check skips it
            if (i + 1 < n && i < n) {
                const Rule* r = find(ids[i], ids[i + 1]);
                ranks[i] = r ? r->rank : kNone;
                results[i] = r ? r->result : -1;
            }
        }
    }
}

// Heap + linked list for long words (long runs of one symbol, minified code): O(n log n).
void Bpe::merge_long(std::vector<int32_t>& ids) const {
    const size_t n = ids.size();
    std::vector<int32_t> prev(n), next(n);
    for (size_t i = 0; i < n; ++i) {
        prev[i] = static_cast<int32_t>(i) - 1;
        next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
    }
    struct Cand {
        int32_t rank, pos, left, right, result;
        bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    auto push = [&](int32_t pos) {
        if (pos < 0 || next[pos] < 0) return;
        if (const Rule* r = find(ids[pos], ids[next[pos]]))
            heap.push({r->rank, pos, ids[pos], ids[next[pos]], r->result});
    };
    for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
    std::vector<char> alive(n, 1);
    while (!heap.empty()) {
        Cand c = heap.top();
        heap.pop();
        // Entries go stale when a neighbour merged first; the ids check catches every such case.
        if (!alive[c.pos] || next[c.pos] < 0 || ids[c.pos] != c.left || ids[next[c.pos]] != c.right) continue;
        int32_t right = next[c.pos];
        ids[c.pos] = c.result;
        alive[right] = 0;
        next[c.pos] = next[right];
        if (next[right] >= 0) prev[next[right]] = c.pos;
        push(prev[c.pos]);
        push(c.pos);
    }
    size_t w = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) ids[w++] = ids[i];
    ids.resize(w);
}

void Bpe::encode_word_uncached(std::string_view bytes, std::vector<int32_t>& out) const {
    std::vector<int32_t> ids(bytes.size());
    for (size_t i = 0; i < bytes.size(); ++i) ids[i] = byte_ids_[static_cast<uint8_t>(bytes[i])];
    if (ids.size() <= kMaxCachedWord * 4) merge_short(ids);
    else merge_long(ids);
    out.insert(out.end(), ids.begin(), ids.end());
}

void Bpe::encode_word(std::string_view bytes, std::vector<int32_t>& out) const {
    if (bytes.size() == 1) {
        out.push_back(byte_ids_[static_cast<uint8_t>(bytes[0])]);
        return;
    }
    if (bytes.size() > kMaxCachedWord) {
        encode_word_uncached(bytes, out);
        return;
    }
    Shard& shard = cache_[std::hash<std::string_view>{}(bytes) % kShards];
    {
        std::lock_guard<std::mutex> lock(shard.mu);
        auto it = shard.words.find(absl::string_view(bytes.data(), bytes.size()));
        if (it != shard.words.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    size_t start = out.size();
    encode_word_uncached(bytes, out);
    std::vector<int32_t> result(out.begin() + start, out.end());
    std::lock_guard<std::mutex> lock(shard.mu);
    if (shard.words.size() >= kShardCapacity) shard.words.clear();
    shard.words.emplace(std::string(bytes), std::move(result));
}

}  // namespace dg::tok
