#include "scheduler/state_slot_pool.h"

#include "absl/strings/str_cat.h"
#include "engine/status.h"

namespace dg::sched {

StateSlotPool::StateSlotPool(int32_t n_seq, int32_t n_spare) : n_seq_(n_seq), n_spare_(n_spare), used_(n_seq + n_spare) {
    for (int32_t s = n_seq - 1; s >= 0; --s) free_[int(Kind::kSeq)].push_back(s);
    for (int32_t s = n_seq + n_spare - 1; s >= n_seq; --s) free_[int(Kind::kSpare)].push_back(s);
}

std::optional<int32_t> StateSlotPool::acquire(Kind k) {
    auto& f = free_[int(k)];
    if (f.empty()) return std::nullopt;
    const int32_t s = f.back();
    f.pop_back();
    used_[s] = true;
    return s;
}

void StateSlotPool::release(int32_t slot) {
    DG_CHECK(slot >= 0 && slot < n_total() && used_[slot], "release of free slot %d", slot);
    used_[slot] = false;
    free_[int(kind(slot))].push_back(slot);
}

absl::Status StateSlotPool::check() const {
    std::vector<int> on_list(used_.size(), 0);
    for (int k = 0; k < 2; ++k)
        for (int32_t s : free_[k]) {
            if (int(kind(s)) != k) return absl::InternalError(absl::StrCat("slot ", s, " is on the wrong free list"));
            ++on_list[s];
        }
    for (size_t s = 0; s < used_.size(); ++s)
        if (on_list[s] + int(used_[s]) != 1)
            return absl::InternalError(absl::StrCat("slot ", s, " is both free and used, or neither"));
    return absl::OkStatus();
}

}  // namespace dg::sched
