#include "scheduler/state_cache.h"

#include <algorithm>
#include <limits>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "engine/status.h"

namespace dg::sched {
namespace {

// A checkpoint a longer one on its own path supersedes can still save its tokens to a request that
// branches exactly there (a regenerated turn), but that is rare: it goes before anything else of use.
constexpr double kSupersededWeight = 1.0 / 16;
// A live session's next turn is expected; a one-off request's checkpoint only helps a repeat.
constexpr double kLiveSessionWeight = 4.0;
// A waiting sequence's resume point is a certain hit.
constexpr double kAwaitedWeight = 16.0;

}  // namespace

StateCache::StateCache(Backend* backend, StateSlotPool* slots, KvBlockPool* blocks, const StateCacheOptions& opt)
    : be_(backend), slots_(slots), blocks_(blocks), opt_(opt),
      state_bytes_(backend->state_floats() * int64_t(sizeof(float))), block_bytes_(backend->kv_block_bytes()) {}

StateCache::~StateCache() {
    while (!entries_.empty()) erase(entries_.begin()->second);
}

int64_t StateCache::entry_host_bytes(const Checkpoint& c) const {
    return (c.tier == Tier::kHost ? state_bytes_ : 0) + int64_t(c.host_tail.size());
}

// --- checkpoints

std::optional<Tier> StateCache::put(uint64_t key, int32_t pos, int32_t src_slot, int32_t tail_block,
                                    const CheckpointMeta& meta) {
    ++stats_.puts;
    if (auto it = entries_.find(key); it != entries_.end()) {
        Checkpoint& c = it->second;
        c.last_use = ++tick_;
        c.epoch = ++ckpt_clock_;
        c.hinted |= meta.hinted;
        c.path_end &= meta.path_end;  // also a periodic position of some request: shared
        if (meta.session != 0) c.session = meta.session;
        return c.tier;
    }
    Checkpoint c;
    c.key = key;
    c.pos = pos;
    c.chain = meta.chain;
    c.session = meta.session;
    c.hinted = meta.hinted;
    c.path_end = meta.path_end;
    c.last_use = ++tick_;
    c.epoch = ++ckpt_clock_;
    if (slots_->n_spare() > 0) {
        if (slots_->n_free(StateSlotPool::Kind::kSpare) == 0) spill_one();
        auto s = slots_->acquire(StateSlotPool::Kind::kSpare);
        DG_CHECK(s.has_value(), "no spare slot after a spill");
        c.slot = *s;
        c.tier = Tier::kDevice;
        be_->state_copy(c.slot, src_slot);
        ++n_device_;
    } else {
        // A new checkpoint's chain is all on the device: its value is its base value.
        const double worth = base_value(c, Clock::now());
        if (!make_host_room(state_bytes_, 0, [&](const Valuation&) { return worth; })) {
            ++stats_.drops;
            return std::nullopt;
        }
        c.tier = Tier::kHost;
        c.host.resize(be_->state_floats());
        be_->state_download(src_slot, c.host.data());
        host_bytes_ += state_bytes_;
    }
    if (tail_block >= 0) {
        blocks_->ref(tail_block);
        c.tail_block = tail_block;
    }
    const Tier t = c.tier;
    entries_.emplace(key, std::move(c));
    promote();
    return t;
}

const Checkpoint* StateCache::find(uint64_t key) const {
    auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : &it->second;
}

Tier StateCache::restore(uint64_t key, int32_t dst_slot) {
    Checkpoint& c = entries_.at(key);
    const Tier from = c.tier;
    if (c.tier == Tier::kDevice) {
        be_->state_copy(dst_slot, c.slot);
        ++stats_.device_hits;
    } else {
        be_->state_upload(dst_slot, c.host.data());
        ++stats_.host_hits;
        // It proved useful: back to a spare slot if one is free (its next restore is a device copy).
        if (auto s = slots_->acquire(StateSlotPool::Kind::kSpare)) to_device(c, *s);
    }
    ++c.hits;
    c.last_use = ++tick_;
    c.epoch = ++ckpt_clock_;
    return from;
}

void StateCache::drop(uint64_t key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    erase(it->second);
    promote();
}

void StateCache::mark_extended(uint64_t key) {
    if (auto it = entries_.find(key); it != entries_.end()) it->second.extended = true;
}

void StateCache::await(uint64_t key) {
    if (auto it = entries_.find(key); it != entries_.end()) ++it->second.awaited;
}

void StateCache::unawait(uint64_t key) {
    // The checkpoint may have been dropped (and even taken again) meanwhile: never below 0.
    if (auto it = entries_.find(key); it != entries_.end() && it->second.awaited > 0) --it->second.awaited;
}

bool StateCache::release_one_tail() {
    // Only a tail that no sequence still uses frees a block; the least valuable such checkpoint goes first.
    const Valuation v = valuate();
    Checkpoint* best = nullptr;
    for (auto& [key, c] : entries_) {
        if (c.tail_block < 0 || blocks_->refs(c.tail_block) != 1) continue;
        if (!best || std::tie(v.ckpt.at(key), c.last_use) < std::tie(v.ckpt.at(best->key), best->last_use)) best = &c;
    }
    if (!best) return false;
    Checkpoint& c = *best;
    const bool worth = opt_.policy == CheckpointPolicy::kLru || v.ckpt.at(c.key) > 0;
    const uint64_t key = c.key;
    if (opt_.spill_kv && block_bytes_ > 0 && worth &&
        make_host_room(block_bytes_, key, [key](const Valuation& nv) { return nv.ckpt.at(key); })) {
        c.host_tail.resize(block_bytes_);
        be_->kv_download_block(c.tail_block, c.host_tail.data());
        host_bytes_ += block_bytes_;
        blocks_->unref(c.tail_block);
        c.tail_block = -1;
        ++stats_.tail_spills;
        promote();
        return true;
    }
    ++stats_.drops;
    erase(c);
    promote();
    return true;
}

// --- host KV blocks

void StateCache::spill_block(int32_t b) {
    const uint64_t hash = blocks_->hash(b);
    if (auto it = host_blocks_.find(hash); it != host_blocks_.end()) {
        it->second.last_use = ++tick_;  // same hash, parent and tokens ⇒ same K/V: nothing to copy
        return;
    }
    // Worth the best checkpoint whose chain passes through it (b is still published during the hook).
    auto worth = [hash](const Valuation& nv) {
        auto it = nv.block.find(hash);
        return it == nv.block.end() ? 0.0 : it->second;
    };
    if (!opt_.spill_kv || block_bytes_ == 0 || !make_host_room(block_bytes_, 0, worth)) {
        ++stats_.block_lost;
        return;
    }
    HostBlock h;
    h.parent = blocks_->parent(b);
    const auto toks = blocks_->tokens(b);
    h.tokens.assign(toks.begin(), toks.end());
    h.kv.resize(block_bytes_);
    be_->kv_download_block(b, h.kv.data());
    h.last_use = ++tick_;
    host_bytes_ += block_bytes_;
    host_blocks_.emplace(hash, std::move(h));
    ++stats_.block_spills;
    promote();
}

bool StateCache::has_host_block(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) const {
    auto it = host_blocks_.find(hash);
    return it != host_blocks_.end() && it->second.parent == parent &&
           std::equal(tokens.begin(), tokens.end(), it->second.tokens.begin(), it->second.tokens.end());
}

HostBlock StateCache::take_block(uint64_t hash) {
    auto it = host_blocks_.find(hash);
    DG_CHECK(it != host_blocks_.end(), "host block %llx is not there", (unsigned long long)hash);
    HostBlock h = std::move(it->second);
    host_blocks_.erase(it);
    host_bytes_ -= block_bytes_;
    return h;
}

void StateCache::touch_session(uint64_t session) {
    if (session == 0) return;
    const Clock::time_point now = Clock::now();
    sessions_[session] = now;
    if (sessions_.size() > 4096)  // forget expired sessions now and then
        for (auto it = sessions_.begin(); it != sessions_.end();) {
            auto cur = it++;
            if (now - cur->second >= opt_.session_ttl) sessions_.erase(cur);
        }
}

// --- valuation

double StateCache::base_value(const Checkpoint& c, Clock::time_point now) const {
    if (opt_.policy == CheckpointPolicy::kLru) return 0;
    double v = c.pos;  // the tokens a resume from it does not compute
    if (c.superseded()) v *= kSupersededWeight;
    if (c.awaited > 0) v *= kAwaitedWeight;
    // Aging: untouched for as many checkpoint events as the cache holds checkpoints, half the value (LRU
    // would have dropped it by then). Without it a long dead prompt would squat forever.
    const double horizon = std::max<double>(8, double(entries_.size()));
    v /= 1.0 + double(ckpt_clock_ - c.epoch) / horizon;
    if (c.session != 0) {
        auto it = sessions_.find(c.session);
        if (it != sessions_.end() && now - it->second < opt_.session_ttl) v *= kLiveSessionWeight;
    }
    return v;
}

StateCache::Valuation StateCache::valuate() const {
    Valuation v;
    const Clock::time_point now = Clock::now();
    const int32_t bt = blocks_->block_tokens();
    std::vector<uint64_t> on_chain;
    for (const auto& [key, c] : entries_) {
        // Walk the pos / bt full blocks before pos, newest first: each on the device or in host RAM, or
        // the checkpoint can save nothing (a lookup stops at the first missing block).
        on_chain.clear();
        bool complete = true;
        uint64_t h = c.chain;
        for (int32_t i = 0; i < c.pos / bt && complete; ++i) {
            if (const int32_t b = blocks_->find_hash(h); b >= 0) {
                on_chain.push_back(h);
                h = blocks_->parent(b);
            } else if (auto it = host_blocks_.find(h); it != host_blocks_.end()) {
                on_chain.push_back(h);
                h = it->second.parent;
            } else {
                complete = false;
            }
        }
        const double cv = complete ? base_value(c, now) : 0.0;
        v.ckpt[key] = cv;
        for (uint64_t hb : on_chain) {
            double& bv = v.block[hb];
            bv = std::max(bv, cv);
        }
    }
    for (const auto& [hash, hb] : host_blocks_) v.block.try_emplace(hash, 0.0);  // needed by none
    return v;
}

double StateCache::value(uint64_t key) const { return valuate().ckpt.at(key); }

bool StateCache::make_host_room(int64_t bytes, uint64_t keep,
                                const std::function<double(const Valuation&)>& incoming) {
    if (bytes > opt_.host_budget_bytes) return false;
    if (host_bytes_ + bytes <= opt_.host_budget_bytes) return true;
    // Candidates: host checkpoints, checkpoints holding a host tail, host blocks; least valuable first
    // (a checkpoint before the blocks of equal value it needs: dropping it may leave them needless), then
    // least recently used. Under kLru every value is 0: recency alone.
    struct Cand {
        double value;
        int kind;  // 0 checkpoint, 1 block
        uint64_t last_use, id;
    };
    const Valuation v = valuate();
    std::vector<Cand> cands;
    for (const auto& [key, c] : entries_)
        if (key != keep && entry_host_bytes(c) > 0) cands.push_back({v.ckpt.at(key), 0, c.last_use, key});
    for (const auto& [hash, hb] : host_blocks_) cands.push_back({v.block.at(hash), 1, hb.last_use, hash});
    const bool lru = opt_.policy == CheckpointPolicy::kLru;
    // Value decides admission too: nothing is evicted for an entry worth less than it.
    const double limit = lru ? std::numeric_limits<double>::infinity() : incoming(v);
    std::sort(cands.begin(), cands.end(), [&](const Cand& a, const Cand& b) {
        if (lru) return std::tie(a.last_use, a.kind) < std::tie(b.last_use, b.kind);
        return std::tie(a.value, a.kind, a.last_use) < std::tie(b.value, b.kind, b.last_use);
    });
    for (const Cand& k : cands) {
        if (host_bytes_ + bytes <= opt_.host_budget_bytes) break;
        if (k.value > limit) break;  // sorted: everything after is worth more too
        if (k.kind == 1) {
            host_blocks_.erase(k.id);
            host_bytes_ -= block_bytes_;
            ++stats_.block_drops;
        } else {
            ++stats_.drops;
            erase(entries_.at(k.id));
        }
    }
    return host_bytes_ + bytes <= opt_.host_budget_bytes;
}

void StateCache::spill_one() {
    const Valuation v = valuate();
    Checkpoint* c = nullptr;
    for (auto& [key, e] : entries_) {
        if (e.tier != Tier::kDevice) continue;
        if (!c || std::tie(v.ckpt.at(key), e.last_use) < std::tie(v.ckpt.at(c->key), c->last_use)) c = &e;
    }
    DG_CHECK(c != nullptr, "spill with no tier-1 checkpoint");
    const uint64_t key = c->key;
    if (!make_host_room(state_bytes_, key, [key](const Valuation& nv) { return nv.ckpt.at(key); })) {
        ++stats_.drops;
        erase(*c);
        return;
    }
    ++stats_.spills;
    c->host.resize(be_->state_floats());
    be_->state_download(c->slot, c->host.data());
    host_bytes_ += state_bytes_;
    slots_->release(c->slot);
    c->slot = -1;
    c->tier = Tier::kHost;
    --n_device_;
}

void StateCache::to_device(Checkpoint& c, int32_t slot) {
    be_->state_upload(slot, c.host.data());
    c.host.clear();
    c.host.shrink_to_fit();
    host_bytes_ -= state_bytes_;
    c.slot = slot;
    c.tier = Tier::kDevice;
    ++n_device_;
    ++stats_.promotions;
}

void StateCache::promote() {
    if (slots_->n_free(StateSlotPool::Kind::kSpare) == 0 || n_host() == 0) return;
    const Valuation v = valuate();
    std::vector<std::pair<std::tuple<double, uint64_t>, uint64_t>> order;
    for (const auto& [key, c] : entries_)
        if (c.tier == Tier::kHost && v.ckpt.at(key) > 0) order.push_back({{v.ckpt.at(key), c.last_use}, key});
    if (opt_.policy == CheckpointPolicy::kLru)  // values are all 0: the most recently used instead
        for (const auto& [key, c] : entries_)
            if (c.tier == Tier::kHost) order.push_back({{0.0, c.last_use}, key});
    std::sort(order.rbegin(), order.rend());
    for (const auto& [rank, key] : order) {
        auto s = slots_->acquire(StateSlotPool::Kind::kSpare);
        if (!s) break;
        to_device(entries_.at(key), *s);
    }
}

void StateCache::erase(Checkpoint& c) {
    if (c.tier == Tier::kDevice) {
        slots_->release(c.slot);
        --n_device_;
    }
    host_bytes_ -= entry_host_bytes(c);
    if (c.tail_block >= 0) blocks_->unref(c.tail_block);
    const uint64_t key = c.key;  // c dies inside erase()
    entries_.erase(key);
}

absl::Status StateCache::check() const {
    int64_t host = 0;
    int32_t device = 0;
    const int32_t bt = blocks_->block_tokens();
    for (const auto& [key, c] : entries_) {
        if (c.key != key) return absl::InternalError(absl::StrCat("checkpoint ", key, " is filed under another key"));
        if (c.tier == Tier::kDevice) {
            ++device;
            if (c.slot < 0 || slots_->kind(c.slot) != StateSlotPool::Kind::kSpare || !slots_->in_use(c.slot) || !c.host.empty())
                return absl::InternalError(absl::StrCat("tier-1 checkpoint ", key, " has no spare slot"));
        } else if (int64_t(c.host.size()) * int64_t(sizeof(float)) != state_bytes_ || c.slot >= 0) {
            return absl::InternalError(absl::StrCat("tier-2 checkpoint ", key, " has the wrong size"));
        }
        host += entry_host_bytes(c);
        if (c.tail_block >= 0 && blocks_->refs(c.tail_block) <= 0)
            return absl::InternalError(absl::StrCat("checkpoint ", key, " holds an unreferenced block"));
        if (c.tail_block >= 0 && !c.host_tail.empty())
            return absl::InternalError(absl::StrCat("checkpoint ", key, " holds its tail twice"));
        if (!c.host_tail.empty() && int64_t(c.host_tail.size()) != block_bytes_)
            return absl::InternalError(absl::StrCat("checkpoint ", key, " has a host tail of the wrong size"));
        if (c.pos % bt != 0 && c.tail_block < 0 && c.host_tail.empty())
            return absl::InternalError(absl::StrCat("checkpoint ", key, " inside a block has lost its tail block"));
    }
    for (const auto& [hash, hb] : host_blocks_) {
        if (int64_t(hb.kv.size()) != block_bytes_ || int32_t(hb.tokens.size()) != bt)
            return absl::InternalError(absl::StrCat("host block ", hash, " has the wrong size"));
        host += block_bytes_;
    }
    if (device != n_device_) return absl::InternalError(absl::StrCat(device, " tier-1 checkpoints, counted ", n_device_));
    if (host != host_bytes_ || host_bytes_ > opt_.host_budget_bytes)
        return absl::InternalError(absl::StrCat("host tier holds ", host, " bytes, counted ", host_bytes_, ", budget ",
                                                opt_.host_budget_bytes));
    return absl::OkStatus();
}

}  // namespace dg::sched
