// GDN state slots on the device (backend slot ids). Slots [0, n_seq) belong to running sequences, one
// each; slots [n_seq, n_seq + n_spare) are spares that hold tier-1 checkpoints (state_cache.h). Keeping
// the two apart means a burst of checkpoints can never block admission, and the reverse.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"

namespace dg::sched {

class StateSlotPool {
public:
    enum class Kind { kSeq, kSpare };

    StateSlotPool(int32_t n_seq, int32_t n_spare);

    int32_t n_seq() const { return n_seq_; }
    int32_t n_spare() const { return n_spare_; }
    int32_t n_total() const { return n_seq_ + n_spare_; }
    int32_t n_free(Kind k) const { return int32_t(free_[int(k)].size()); }

    std::optional<int32_t> acquire(Kind k);
    void release(int32_t slot);
    bool in_use(int32_t slot) const { return used_[slot]; }
    Kind kind(int32_t slot) const { return slot < n_seq_ ? Kind::kSeq : Kind::kSpare; }

    absl::Status check() const;

private:
    int32_t n_seq_, n_spare_;
    std::vector<int32_t> free_[2];  // stacks per kind
    std::vector<bool> used_;
};

}  // namespace dg::sched
