// The scheduling rules as plain functions (no state), so they read in one place and test alone.
#pragma once

#include <cstdint>
#include <vector>

namespace dg::sched {

// Admission (and, reversed, preemption) order: higher priority first, then older, then lower id.
inline bool admission_before(int32_t prio_a, int64_t arrival_a, int64_t id_a, int32_t prio_b, int64_t arrival_b,
                             int64_t id_b) {
    if (prio_a != prio_b) return prio_a > prio_b;
    if (arrival_a != arrival_b) return arrival_a < arrival_b;
    return id_a < id_b;
}

// Where a chunk starting at `pos` must end at the latest (exclusive), before the token budget: the
// end of the known tokens, and every position where a checkpoint is due, since a checkpoint can only
// be taken between steps: the end of the prompt, multiples of `every` (0: none) and the hints.
int32_t next_chunk_end(int32_t pos, int32_t n_tokens, int32_t prompt_len, int32_t every,
                       const std::vector<int32_t>& hints);

// Whether the state after a chunk of `len` tokens ending at `pos` is to be checkpointed. `every`
// applies to prefill chunks only (len > 1), so a decode does not checkpoint every N tokens.
bool is_checkpoint_position(int32_t pos, int32_t len, int32_t prompt_len, int32_t every,
                            const std::vector<int32_t>& hints);

}  // namespace dg::sched
