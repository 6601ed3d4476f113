#include "scheduler/state_cache.h"

#include "absl/strings/str_cat.h"
#include "engine/status.h"

namespace dg::sched {

StateCache::StateCache(Backend* backend, StateSlotPool* slots, KvBlockPool* blocks, int64_t host_budget_bytes)
    : be_(backend), slots_(slots), blocks_(blocks), host_budget_(host_budget_bytes),
      state_bytes_(backend->state_floats() * int64_t(sizeof(float))) {}

StateCache::~StateCache() {
    while (!entries_.empty()) erase(entries_.begin()->second);
}

std::optional<Tier> StateCache::put(uint64_t key, int32_t pos, int32_t src_slot, int32_t tail_block) {
    ++stats_.puts;
    if (auto it = entries_.find(key); it != entries_.end()) {
        Checkpoint& c = it->second;
        lru(c.tier).splice(lru(c.tier).end(), lru(c.tier), c.lru);
        return c.tier;
    }
    Checkpoint c;
    c.key = key;
    c.pos = pos;
    if (slots_->n_spare() > 0) {
        if (slots_->n_free(StateSlotPool::Kind::kSpare) == 0) spill_one();
        auto s = slots_->acquire(StateSlotPool::Kind::kSpare);
        DG_CHECK(s.has_value(), "no spare slot after a spill");
        c.slot = *s;
        c.tier = Tier::kDevice;
        be_->state_copy(c.slot, src_slot);
    } else {
        if (!make_host_room(state_bytes_)) {
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
    c.lru = lru(c.tier).insert(lru(c.tier).end(), key);
    const Tier t = c.tier;
    entries_.emplace(key, std::move(c));
    return t;
}

const Checkpoint* StateCache::find(uint64_t key) const {
    auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : &it->second;
}

Tier StateCache::restore(uint64_t key, int32_t dst_slot) {
    Checkpoint& c = entries_.at(key);
    if (c.tier == Tier::kDevice) {
        be_->state_copy(dst_slot, c.slot);
        ++stats_.device_hits;
    } else {
        be_->state_upload(dst_slot, c.host.data());
        ++stats_.host_hits;
    }
    lru(c.tier).splice(lru(c.tier).end(), lru(c.tier), c.lru);
    return c.tier;
}

void StateCache::drop(uint64_t key) {
    auto it = entries_.find(key);
    if (it != entries_.end()) erase(it->second);
}

bool StateCache::drop_one_with_tail() {
    // Host-tier entries first: they are the colder ones. Only a tail that no sequence still uses
    // frees a block; dropping the others would lose state for nothing.
    for (Tier t : {Tier::kHost, Tier::kDevice})
        for (uint64_t key : lru(t)) {
            Checkpoint& c = entries_.at(key);
            if (c.tail_block >= 0 && blocks_->refs(c.tail_block) == 1) {
                ++stats_.drops;
                erase(c);
                return true;
            }
        }
    return false;
}

bool StateCache::make_host_room(int64_t bytes) {
    if (bytes > host_budget_) return false;
    while (host_bytes_ + bytes > host_budget_) {
        ++stats_.drops;
        erase(entries_.at(lru(Tier::kHost).front()));
    }
    return true;
}

void StateCache::spill_one() {
    Checkpoint& c = entries_.at(lru(Tier::kDevice).front());
    if (!make_host_room(state_bytes_)) {
        ++stats_.drops;
        erase(c);
        return;
    }
    ++stats_.spills;
    c.host.resize(be_->state_floats());
    be_->state_download(c.slot, c.host.data());
    host_bytes_ += state_bytes_;
    slots_->release(c.slot);
    c.slot = -1;
    lru(Tier::kDevice).erase(c.lru);
    c.tier = Tier::kHost;
    c.lru = lru(Tier::kHost).insert(lru(Tier::kHost).end(), c.key);
}

void StateCache::erase(Checkpoint& c) {
    lru(c.tier).erase(c.lru);
    if (c.tier == Tier::kDevice) {
        slots_->release(c.slot);
    } else {
        host_bytes_ -= state_bytes_;
    }
    if (c.tail_block >= 0) blocks_->unref(c.tail_block);
    const uint64_t key = c.key;  // c dies inside erase()
    entries_.erase(key);
}

absl::Status StateCache::check() const {
    int64_t host = 0;
    size_t listed = 0;
    for (int t = 0; t < 2; ++t)
        for (uint64_t key : lru_[t]) {
            ++listed;
            auto it = entries_.find(key);
            if (it == entries_.end() || int(it->second.tier) != t)
                return absl::InternalError(absl::StrCat("checkpoint ", key, " is listed in the wrong tier"));
            const Checkpoint& c = it->second;
            if (c.tier == Tier::kDevice) {
                if (c.slot < 0 || slots_->kind(c.slot) != StateSlotPool::Kind::kSpare || !slots_->in_use(c.slot))
                    return absl::InternalError(absl::StrCat("tier-1 checkpoint ", key, " has no spare slot"));
            } else {
                if (int64_t(c.host.size()) * int64_t(sizeof(float)) != state_bytes_)
                    return absl::InternalError(absl::StrCat("tier-2 checkpoint ", key, " has the wrong size"));
                host += state_bytes_;
            }
            if (c.tail_block >= 0 && blocks_->refs(c.tail_block) <= 0)
                return absl::InternalError(absl::StrCat("checkpoint ", key, " holds an unreferenced block"));
        }
    if (listed != entries_.size()) return absl::InternalError("checkpoint LRU lists do not cover the entries");
    if (host != host_bytes_ || host_bytes_ > host_budget_)
        return absl::InternalError(absl::StrCat("host tier holds ", host, " bytes, counted ", host_bytes_, ", budget ",
                                                host_budget_));
    return absl::OkStatus();
}

}  // namespace dg::sched
