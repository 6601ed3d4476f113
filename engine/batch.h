// One forward step's batch: a flat token list cut into per-sequence ranges (varlen), so prefill chunks
// and decode tokens of many sequences share one pass (DESIGN: Engine / Batches).
#pragma once

#include <cstdint>
#include <vector>

namespace dg {

struct SeqSlice {
    int32_t begin = 0;          // first row of this sequence in the step's token list
    int32_t len = 0;            // rows in this step (1 = decode, >1 = prefill chunk)
    int32_t pos0 = 0;           // tokens already in this sequence's KV and state (position of row `begin`)
    int32_t state_slot = -1;    // GDN state slot (conv + recurrent), owned by the sequence
    const int32_t* blocks = nullptr;  // KV block table; must cover positions [0, pos0 + len)
    int32_t n_blocks = 0;
    bool all_logits = false;    // logits for every row, else only for the last row
};

struct StepBatch {
    std::vector<int32_t> tokens;   // [n_tokens]
    std::vector<SeqSlice> seqs;
    int32_t n_tokens() const { return int32_t(tokens.size()); }
    // Rows of the logits output, in order: every row of an all_logits sequence, else its last row.
    int32_t n_logit_rows() const {
        int32_t n = 0;
        for (const SeqSlice& s : seqs) n += s.all_logits ? s.len : 1;
        return n;
    }
};

}  // namespace dg
