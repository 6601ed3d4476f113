#include "scheduler/batch_policy.h"

#include <algorithm>

namespace dg::sched {

int32_t next_chunk_end(int32_t pos, int32_t n_tokens, int32_t prompt_len, int32_t every,
                       const std::vector<int32_t>& hints) {
    int32_t end = n_tokens;
    auto cut = [&](int32_t p) {
        if (p > pos && p < end) end = p;
    };
    cut(prompt_len);
    if (every > 0) cut((pos / every + 1) * every);
    for (int32_t h : hints) cut(h);
    return end;
}

bool is_checkpoint_position(int32_t pos, int32_t len, int32_t prompt_len, int32_t every,
                            const std::vector<int32_t>& hints) {
    if (pos == prompt_len) return true;
    if (every > 0 && len > 1 && pos % every == 0) return true;
    return std::find(hints.begin(), hints.end(), pos) != hints.end();
}

}  // namespace dg::sched
