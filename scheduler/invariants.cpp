// EngineLoop::check_invariants: recounts every reference from the holders' side and compares it with
// the pools' own books. Used by the tests after each operation of randomized workloads.
#include <set>

#include "absl/strings/str_cat.h"
#include "engine/status.h"
#include "scheduler/engine_loop.h"

namespace dg::sched {

absl::Status EngineLoop::check_invariants() const {
    DG_RETURN_IF_ERROR(slots_->check());
    DG_RETURN_IF_ERROR(cache_->check());
    const int32_t bt = pool_->block_tokens();
    std::vector<int32_t> refs(pool_->n_blocks(), 0);
    std::set<int32_t> seq_slots;
    std::set<SeqId> listed;
    for (SeqId id : running_) {
        auto it = seqs_.find(id);
        if (it == seqs_.end()) return absl::InternalError(absl::StrCat("running sequence ", id, " does not exist"));
        const Seq& s = it->second;
        if (!s.running || s.slot < 0 || slots_->kind(s.slot) != StateSlotPool::Kind::kSeq || !slots_->in_use(s.slot))
            return absl::InternalError(absl::StrCat("running sequence ", id, " has no sequence slot"));
        if (!seq_slots.insert(s.slot).second) return absl::InternalError(absl::StrCat("slot ", s.slot, " is shared"));
        if (int64_t(s.blocks.size()) * bt < s.pos)
            return absl::InternalError(absl::StrCat("sequence ", id, " at ", s.pos, " has only ", s.blocks.size(), " blocks"));
        for (int32_t b : s.blocks) ++refs[b];
        listed.insert(id);
    }
    for (SeqId id : waiting_) {
        auto it = seqs_.find(id);
        if (it == seqs_.end()) return absl::InternalError(absl::StrCat("waiting sequence ", id, " does not exist"));
        const Seq& s = it->second;
        if (s.running || s.slot >= 0 || !s.blocks.empty())
            return absl::InternalError(absl::StrCat("waiting sequence ", id, " holds a slot or blocks"));
        if (!listed.insert(id).second) return absl::InternalError(absl::StrCat("sequence ", id, " is listed twice"));
    }
    if (listed.size() != seqs_.size()) return absl::InternalError("a sequence is neither running nor waiting");
    const int32_t used_seq_slots = slots_->n_seq() - slots_->n_free(StateSlotPool::Kind::kSeq);
    if (used_seq_slots != int32_t(running_.size()))
        return absl::InternalError(absl::StrCat(used_seq_slots, " sequence slots used by ", running_.size(), " sequences"));
    const int32_t used_spare = slots_->n_spare() - slots_->n_free(StateSlotPool::Kind::kSpare);
    if (used_spare != cache_->n_device())
        return absl::InternalError(absl::StrCat(used_spare, " spare slots used by ", cache_->n_device(), " checkpoints"));
    for (const auto& [key, c] : cache_->entries())
        if (c.tail_block >= 0) ++refs[c.tail_block];
    DG_RETURN_IF_ERROR(pool_->check(&refs));

    std::map<RequestId, int32_t> live;
    for (const auto& [id, s] : seqs_) {
        if (!reqs_.contains(s.req)) return absl::InternalError(absl::StrCat("sequence ", id, " has no request"));
        ++live[s.req];
    }
    for (const auto& [id, r] : reqs_)
        if (live[id] != r.live || r.live <= 0)
            return absl::InternalError(absl::StrCat("request ", id, " counts ", r.live, " live continuations, has ", live[id]));
    return absl::OkStatus();
}

}  // namespace dg::sched
