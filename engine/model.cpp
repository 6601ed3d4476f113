// The Qwen3.5 forward pass: straight-line over layers, one backend call per coarse op.
// Math: docs/qwen35-model.md §2-§4 (and the NumPy reference, which the golden tests compare against).
#include "engine/model.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/status.h"

namespace dg {

absl::StatusOr<std::unique_ptr<Model>> Model::create(std::unique_ptr<ModelWeights> weights,
                                                     std::unique_ptr<Backend> backend, const CacheLayout& caches) {
    std::unique_ptr<Model> m(new Model());
    m->weights_ = std::move(weights);
    m->backend_ = std::move(backend);
    const ModelConfig& c = m->config();
    int32_t g = 0, a = 0;
    for (int64_t i = 0; i < c.n_layers; ++i) {
        m->gdn_index_.push_back(c.is_attention[i] ? -1 : g++);
        m->attn_index_.push_back(c.is_attention[i] ? a++ : -1);
    }
    DG_RETURN_IF_ERROR(m->backend_->place_weights(*m->weights_));
    DG_RETURN_IF_ERROR(m->backend_->prepare_weights(*m->weights_));
    DG_RETURN_IF_ERROR(m->backend_->init_caches(c, caches));
    return m;
}

Model::~Model() {
    if (backend_)
        for (float* p : allocations_) backend_->free(p);
}

absl::Status Model::reserve(int32_t n, int32_t rows) {
    if (n <= ws_.tokens && rows <= ws_.logit_rows) return absl::OkStatus();
    for (float* p : allocations_) backend_->free(p);
    allocations_.clear();
    ws_ = Workspace{};
    n = std::max(n, 1);
    rows = std::max(rows, 1);
    const ModelConfig& c = config();
    const int64_t H = c.hidden, vdim = c.lin_v_heads * c.lin_v_dim, qdim = c.n_heads * c.head_dim;
    const int64_t kvdim = c.n_kv_heads * c.head_dim;
    const int64_t I = std::max({c.intermediate, c.shared_intermediate, int64_t(1)});
    auto get = [&](float** dst, int64_t count) -> absl::Status {
        DG_ASSIGN_OR_RETURN(*dst, backend_->alloc_f32(std::max<int64_t>(count, 1)));
        allocations_.push_back(*dst);
        return absl::OkStatus();
    };
    DG_RETURN_IF_ERROR(get(&ws_.x, n * H));
    DG_RETURN_IF_ERROR(get(&ws_.h, n * H));
    DG_RETURN_IF_ERROR(get(&ws_.y, n * H));
    DG_RETURN_IF_ERROR(get(&ws_.big, n * std::max(c.conv_dim(), 2 * qdim)));
    DG_RETURN_IF_ERROR(get(&ws_.z, n * std::max(vdim, kvdim)));
    DG_RETURN_IF_ERROR(get(&ws_.v, n * kvdim));
    DG_RETURN_IF_ERROR(get(&ws_.ba, n * 2 * c.lin_v_heads));
    DG_RETURN_IF_ERROR(get(&ws_.o, n * std::max(vdim, qdim)));
    DG_RETURN_IF_ERROR(get(&ws_.ff1, n * I));
    DG_RETURN_IF_ERROR(get(&ws_.ff2, n * I));
    DG_RETURN_IF_ERROR(get(&ws_.last, int64_t(rows) * H));
    DG_RETURN_IF_ERROR(get(&ws_.logits, int64_t(rows) * c.vocab_size));
    ws_.tokens = n;
    ws_.logit_rows = rows;
    return absl::OkStatus();
}

absl::Status Model::validate(const StepBatch& b) const {
    const ModelConfig& c = config();
    const CacheLayout& L = backend_->cache_layout();
    if (b.tokens.empty()) return absl::InvalidArgumentError("empty batch");
    for (size_t i = 0; i < b.tokens.size(); ++i)
        if (b.tokens[i] < 0 || b.tokens[i] >= c.vocab_size)
            return absl::InvalidArgumentError(
                absl::StrCat("token id ", b.tokens[i], " at row ", i, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    int32_t next = 0;
    for (size_t s = 0; s < b.seqs.size(); ++s) {
        const SeqSlice& q = b.seqs[s];
        auto bad = [&](const std::string& why) { return absl::InvalidArgumentError(absl::StrCat("sequence ", s, ": ", why)); };
        if (q.begin != next || q.len <= 0) return bad("rows must be contiguous, non-empty and in order");
        next += q.len;
        if (q.pos0 < 0 || int64_t(q.pos0) + q.len > c.max_context)
            return bad(absl::StrCat("positions [", q.pos0, ", ", int64_t(q.pos0) + q.len, ") exceed the context length ",
                                    c.max_context));
        if (c.n_gdn_layers() > 0 && (q.state_slot < 0 || q.state_slot >= L.n_state_slots))
            return bad(absl::StrCat("state slot ", q.state_slot, " out of range [0, ", L.n_state_slots, ")"));
        if (c.n_attention_layers() > 0) {
            int64_t need = (int64_t(q.pos0) + q.len + L.block_tokens - 1) / L.block_tokens;
            if (q.n_blocks < need || !q.blocks)
                return bad(absl::StrCat("block table has ", q.n_blocks, " blocks, needs ", need));
            for (int64_t i = 0; i < need; ++i)
                if (q.blocks[i] < 0 || q.blocks[i] >= L.n_blocks)
                    return bad(absl::StrCat("block id ", q.blocks[i], " out of range"));
        }
        for (size_t t = 0; t < s; ++t)
            if (c.n_gdn_layers() > 0 && b.seqs[t].state_slot == q.state_slot)
                return bad(absl::StrCat("shares state slot ", q.state_slot, " with sequence ", t));
    }
    if (next != b.n_tokens()) return absl::InvalidArgumentError("sequence ranges do not cover the token list");
    return absl::OkStatus();
}

void Model::mixer(const StepBatch& b, int32_t l, int32_t n) {
    const ModelConfig& c = config();
    const LayerWeights& lw = weights_->layers[l];
    Backend& be = *backend_;
    if (lw.is_attention) {
        const AttnWeights& w = lw.attn;
        // q: [n, Hq * 2hd], per head [query | gate]
        const Matrix* Ws[] = {&w.q, &w.k, &w.v};
        float* ys[] = {ws_.big, ws_.z, ws_.v};
        be.matmuls_of_one_input(ws_.h, n, Ws, ys);
        AttnDims d{c.n_heads, c.n_kv_heads, c.head_dim, c.rotary_dim, c.rope_theta};
        be.attention(b, attn_index_[l], d, w, c.rms_eps, ws_.big, ws_.z, ws_.v, ws_.o);
        be.matmul(ws_.o, n, w.o, ws_.y);
    } else {
        const GdnWeights& w = lw.gdn;
        float* beta = ws_.ba;
        float* alpha = ws_.ba + int64_t(n) * c.lin_v_heads;
        const Matrix* Ws[] = {&w.qkv, &w.z, &w.beta, &w.alpha};
        float* ys[] = {ws_.big, ws_.z, beta, alpha};
        be.matmuls_of_one_input(ws_.h, n, Ws, ys);
        GdnDims d{c.lin_k_heads, c.lin_v_heads, c.lin_k_dim, c.lin_v_dim, c.conv_kernel, c.conv_dim()};
        be.gdn_mixer(b, gdn_index_[l], d, w, c.rms_eps, ws_.big, ws_.z, beta, alpha, ws_.o);
        be.matmul(ws_.o, n, w.out, ws_.y);
    }
}

void Model::mlp(int32_t l, int32_t n) {
    const ModelConfig& c = config();
    const LayerWeights& lw = weights_->layers[l];
    Backend& be = *backend_;
    if (c.is_moe()) {
        be.moe_ffn(ws_.h, n, lw.moe, c.n_experts_used, ws_.y);
        return;
    }
    const Matrix* Ws[] = {&lw.mlp.gate, &lw.mlp.up};
    float* ys[] = {ws_.ff1, ws_.ff2};
    be.matmuls_of_one_input(ws_.h, n, Ws, ys);
    be.swiglu(ws_.ff1, ws_.ff2, int64_t(n) * c.intermediate, ws_.ff1);
    be.matmul(ws_.ff1, n, lw.mlp.down, ws_.y);
}

absl::Status Model::run(const StepBatch& b, std::span<const SampleRow> sample_rows) {
    DG_RETURN_IF_ERROR(validate(b));
    const ModelConfig& c = config();
    const int32_t n = b.n_tokens(), rows = b.n_logit_rows();
    DG_RETURN_IF_ERROR(reserve(n, rows));
    Backend& be = *backend_;
    DG_RETURN_IF_ERROR(be.take_error());  // a failure between steps (state copies) fails this step
    const int64_t H = c.hidden;
    std::vector<int32_t> out_rows;
    out_rows.reserve(rows);
    for (const SeqSlice& s : b.seqs) {
        if (s.all_logits)
            for (int32_t i = 0; i < s.len; ++i) out_rows.push_back(s.begin + i);
        else
            out_rows.push_back(s.begin + s.len - 1);
    }
    be.begin_step(b, out_rows, sample_rows);

    be.embed(b.tokens.data(), n, weights_->embed, ws_.x);
    be.rmsnorm(ws_.x, weights_->layers[0].attn_norm.data(), n, H, c.rms_eps, ws_.h);
    for (int32_t l = 0; l < int32_t(c.n_layers); ++l) {
        const LayerWeights& lw = weights_->layers[l];
        mixer(b, l, n);
        be.add_rmsnorm(ws_.x, ws_.y, lw.post_norm.data(), n, H, c.rms_eps, ws_.h);
        mlp(l, n);
        if (l + 1 < int32_t(c.n_layers)) {  // the residual add and the next layer's input norm
            be.add_rmsnorm(ws_.x, ws_.y, weights_->layers[l + 1].attn_norm.data(), n, H, c.rms_eps, ws_.h);
        } else {
            be.add(ws_.x, ws_.y, int64_t(n) * H);
        }
    }

    be.copy_rows(ws_.x, out_rows.data(), rows, H, ws_.last);
    be.rmsnorm(ws_.last, weights_->final_norm.data(), rows, H, c.rms_eps, ws_.last);
    be.matmul(ws_.last, rows, weights_->lm_head, ws_.logits);
    return absl::OkStatus();
}

absl::Status Model::forward(const StepBatch& b, std::vector<float>* logits) {
    DG_RETURN_IF_ERROR(run(b, {}));
    const int64_t n = int64_t(b.n_logit_rows()) * config().vocab_size;
    logits->resize(size_t(n));
    backend_->to_host(ws_.logits, logits->data(), n);
    return backend_->take_error();
}

absl::Status Model::forward_sample(const StepBatch& b, std::span<const SampleRow> rows, std::vector<SampledToken>* out) {
    DG_RETURN_IF_ERROR(run(b, rows));
    DG_RETURN_IF_ERROR(backend_->take_error());
    const absl::Status st = backend_->sample(ws_.logits, b.n_logit_rows(), config().vocab_size, rows, out);
    DG_RETURN_IF_ERROR(backend_->take_error());
    return st;
}

}  // namespace dg
