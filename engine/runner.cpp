#include "engine/runner.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/status.h"

namespace dg {

absl::StatusOr<std::unique_ptr<Runner>> Runner::open(const std::string& path, BackendKind backend,
                                                     const RunnerOptions& opt) {
    DG_ASSIGN_OR_RETURN(std::unique_ptr<ModelWeights> w, load_model(path));
    return create(std::move(w), backend, opt);
}

absl::StatusOr<std::unique_ptr<Runner>> Runner::create(std::unique_ptr<ModelWeights> w, BackendKind backend,
                                                       const RunnerOptions& opt) {
    if (opt.max_seqs <= 0 || opt.block_tokens <= 0 || opt.max_tokens_per_seq <= 0 || opt.prefill_chunk < 0)
        return absl::InvalidArgumentError("runner: max_seqs, block_tokens and max_tokens_per_seq must be positive");
    std::unique_ptr<Runner> r(new Runner());
    r->opt_ = opt;
    r->opt_.max_tokens_per_seq = std::min<int64_t>(opt.max_tokens_per_seq, w->config.max_context);
    const int64_t blocks_per_seq = (r->opt_.max_tokens_per_seq + opt.block_tokens - 1) / opt.block_tokens;
    CacheLayout layout{opt.kv_type, opt.block_tokens, int32_t(blocks_per_seq * opt.max_seqs), opt.max_seqs};
    DG_ASSIGN_OR_RETURN(std::unique_ptr<Backend> be, make_backend(backend));
    DG_ASSIGN_OR_RETURN(r->model_, Model::create(std::move(w), std::move(be), layout));
    r->seqs_.resize(opt.max_seqs);
    for (int32_t s = 0; s < opt.max_seqs; ++s)
        for (int64_t b = 0; b < blocks_per_seq; ++b) r->seqs_[s].blocks.push_back(int32_t(s * blocks_per_seq + b));
    return r;
}

absl::StatusOr<int32_t> Runner::new_sequence() {
    for (int32_t s = 0; s < int32_t(seqs_.size()); ++s) {
        if (seqs_[s].used) continue;
        seqs_[s].used = true;
        seqs_[s].pos = 0;
        model_->backend().state_clear(s);
        return s;
    }
    return absl::ResourceExhaustedError(absl::StrCat("runner: all ", seqs_.size(), " sequences are in use"));
}

void Runner::release(int32_t seq) {
    if (seq >= 0 && seq < int32_t(seqs_.size())) seqs_[seq].used = false;
}

absl::Status Runner::check_seq(int32_t seq) const {
    if (seq < 0 || seq >= int32_t(seqs_.size()) || !seqs_[seq].used)
        return absl::InvalidArgumentError(absl::StrCat("runner: sequence ", seq, " is not open"));
    return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> Runner::feed(int32_t seq, std::span<const int32_t> tokens, bool all_logits,
                                                int32_t chunk) {
    DG_RETURN_IF_ERROR(check_seq(seq));
    if (tokens.empty()) return absl::InvalidArgumentError("runner: no tokens to feed");
    chunk = chunk > 0 ? chunk : (opt_.prefill_chunk > 0 ? opt_.prefill_chunk : int32_t(tokens.size()));
    std::vector<float> out, step;
    for (size_t at = 0; at < tokens.size(); at += chunk) {
        const size_t n = std::min(tokens.size() - at, size_t(chunk));
        DG_ASSIGN_OR_RETURN(step, feed_batch({{seq, std::vector<int32_t>(tokens.begin() + at, tokens.begin() + at + n)}},
                                             all_logits));
        if (all_logits) out.insert(out.end(), step.begin(), step.end());
        else out.swap(step);
    }
    return out;
}

absl::StatusOr<std::vector<float>> Runner::feed_batch(
    const std::vector<std::pair<int32_t, std::vector<int32_t>>>& work, bool all_logits) {
    std::vector<float> logits;
    DG_RETURN_IF_ERROR(step(work, all_logits, &logits, {}, nullptr));
    return logits;
}

absl::StatusOr<std::vector<SampledToken>> Runner::feed_sample(int32_t seq, std::span<const int32_t> tokens,
                                                              std::span<const SampleRow> rows) {
    if (tokens.empty()) return absl::InvalidArgumentError("runner: no tokens to feed");
    std::vector<SampledToken> drawn;
    DG_RETURN_IF_ERROR(step({{seq, std::vector<int32_t>(tokens.begin(), tokens.end())}}, false, nullptr, rows, &drawn));
    return drawn;
}

absl::Status Runner::step(const std::vector<std::pair<int32_t, std::vector<int32_t>>>& work, bool all_logits,
                          std::vector<float>* logits, std::span<const SampleRow> rows,
                          std::vector<SampledToken>* drawn) {
    StepBatch b;
    for (const auto& [seq, toks] : work) {
        DG_RETURN_IF_ERROR(check_seq(seq));
        Seq& s = seqs_[seq];
        if (s.pos + int64_t(toks.size()) > opt_.max_tokens_per_seq)
            return absl::InvalidArgumentError(absl::StrCat("sequence ", seq, ": ", s.pos + toks.size(),
                                                           " tokens exceed the runner's limit of ",
                                                           opt_.max_tokens_per_seq));
        SeqSlice sl;
        sl.begin = b.n_tokens();
        sl.len = int32_t(toks.size());
        sl.pos0 = int32_t(s.pos);
        sl.state_slot = seq;
        sl.blocks = s.blocks.data();
        sl.n_blocks = int32_t(s.blocks.size());
        sl.all_logits = all_logits;
        b.seqs.push_back(sl);
        b.tokens.insert(b.tokens.end(), toks.begin(), toks.end());
    }
    DG_RETURN_IF_ERROR(logits ? model_->forward(b, logits) : model_->forward_sample(b, rows, drawn));
    for (const auto& [seq, toks] : work) seqs_[seq].pos += int64_t(toks.size());
    return absl::OkStatus();
}

}  // namespace dg
