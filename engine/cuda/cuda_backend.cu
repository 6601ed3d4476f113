// The CUDA backend, v0 (correctness first): device memory for weights, activations, KV blocks and
// state slots, and every op of engine/backend.h as a plain kernel (engine/cuda/*.cu). Mirrors
// engine/cpu/cpu_backend.cpp op for op so tests/unit/gpu compares the two. GDN runs the fused decode
// and chunked prefill kernels, attention the split-K decode and tiled prefill kernels (docs/cuda.md).
// Not yet: tensor-core GEMM, CUDA graphs (issue 15).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/backend.h"
#include "engine/cuda/attention_geometry.h"
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/cuda_device.h"
#include "engine/cuda/ops.cuh"
#include "engine/moe_routing.h"
#include "engine/status.h"

namespace dg::cuda {

void fail(const char* expr, const char* file, int line, cudaError_t err) {
    const char* f = std::strstr(file, "engine/");
    throw DeviceError(absl::StrCat(f ? f : file, ":", line, ": ", cudaGetErrorName(err), " (", cudaGetErrorString(err),
                                   ") in ", expr),
                      err);
}

namespace {

// A device buffer that only grows (per-step scratch: block tables, sequence descriptors, MoE rows).
template <typename T>
struct Scratch {
    T* ptr = nullptr;
    size_t cap = 0;
    T* need(size_t n) {
        if (n > cap) {
            if (ptr) DG_CUDA_CHECK(cudaFree(ptr));
            ptr = nullptr, cap = 0;
            const size_t want = std::max(n, cap * 2);
            DG_CUDA_CHECK(cudaMalloc(&ptr, want * sizeof(T)));
            cap = want;
        }
        return ptr;
    }
    ~Scratch() {
        if (ptr) cudaFree(ptr);
    }
};

class CudaBackend final : public Backend {
public:
    // exact: every matmul on the fp32 oracle kernel (`cuda-exact`, the twin of `cpu-exact`); otherwise the
    // serving path: GEMV with quantised activations at decode, tensor-core GEMM at prefill (matmul.cuh).
    explicit CudaBackend(bool exact) : exact_(exact), mm_(exact ? MatmulPath::kExact : MatmulPath::kAuto) {}
    ~CudaBackend() override {
        for (auto& [h, d] : dev_data_) cudaFree(d);
        for (auto& [h, d] : dev_vec_) cudaFree(d);
    }
    std::string name() const override { return exact_ ? "cuda-exact" : "cuda"; }
    std::string device_name() const override { return cuda::device_name(cuda::current_device()); }

    // The first device error since the last call; after one, ops do nothing until it is taken. When the
    // device itself is broken (a sticky error: the context is lost), every later call reports it too.
    absl::Status take_error() override {
        if (lost_) return error_;
        absl::Status e = std::exchange(error_, absl::OkStatus());
        return e;
    }
    bool device_lost() const override { return lost_; }

    absl::StatusOr<float*> alloc_f32(int64_t n) override {
        float* p = nullptr;
        if (cudaMalloc(&p, size_t(n) * sizeof(float)) != cudaSuccess) {
            cudaGetLastError();
            return absl::ResourceExhaustedError(absl::StrCat("cuda: cannot allocate ", n * 4, " bytes of device memory"));
        }
        return p;
    }
    void free(float* p) override {
        guard([&] { DG_CUDA_CHECK(cudaFree(p)); });
    }
    void to_host(const float* src, float* dst, int64_t n) override {
        guard([&] { DG_CUDA_CHECK(cudaMemcpy(dst, src, size_t(n) * 4, cudaMemcpyDeviceToHost)); });
    }
    void from_host(const float* src, float* dst, int64_t n) override {
        guard([&] { DG_CUDA_CHECK(cudaMemcpy(dst, src, size_t(n) * 4, cudaMemcpyHostToDevice)); });
    }

    absl::Status prepare_weights(const ModelWeights& w) override {
        absl::Status st;
        guard([&] { st = prepare_weights_impl(w); });
        DG_RETURN_IF_ERROR(take_error());
        return st;
    }
    absl::Status prepare_weights_impl(const ModelWeights& w) {
        auto mat = [&](const Matrix& m) { return upload(m.data, uint64_t(m.rows) * m.row_bytes); };
        auto vec = [&](const std::vector<float>& v) { return upload_vec(v); };
        auto mlp = [&](const MlpWeights& m) -> absl::Status {
            for (const Matrix* x : {&m.gate, &m.up, &m.down})
                if (!x->empty()) DG_RETURN_IF_ERROR(mat(*x));
            return absl::OkStatus();
        };
        DG_RETURN_IF_ERROR(mat(w.embed));
        DG_RETURN_IF_ERROR(mat(w.lm_head));
        DG_RETURN_IF_ERROR(vec(w.final_norm));
        for (const LayerWeights& l : w.layers) {
            DG_RETURN_IF_ERROR(vec(l.attn_norm));
            DG_RETURN_IF_ERROR(vec(l.post_norm));
            if (l.is_attention) {
                for (const Matrix* x : {&l.attn.q, &l.attn.k, &l.attn.v, &l.attn.o}) DG_RETURN_IF_ERROR(mat(*x));
                DG_RETURN_IF_ERROR(vec(l.attn.q_norm));
                DG_RETURN_IF_ERROR(vec(l.attn.k_norm));
            } else {
                const GdnWeights& g = l.gdn;
                for (const Matrix* x : {&g.qkv, &g.z, &g.beta, &g.alpha, &g.out}) DG_RETURN_IF_ERROR(mat(*x));
                for (const auto* v : {&g.conv_w, &g.dt_bias, &g.ssm_a, &g.norm_w}) DG_RETURN_IF_ERROR(vec(*v));
            }
            DG_RETURN_IF_ERROR(mlp(l.mlp));
            if (!l.moe.router.empty()) {
                DG_RETURN_IF_ERROR(mat(l.moe.router));
                DG_RETURN_IF_ERROR(mat(l.moe.shared_gate));
                DG_RETURN_IF_ERROR(mlp(l.moe.shared));
                for (const MlpWeights& e : l.moe.experts) DG_RETURN_IF_ERROR(mlp(e));
            }
        }
        return absl::OkStatus();
    }

    // Validates the layout as the CPU backend does, allocates every buffer before taking any (a failure
    // frees what was allocated), and zeroes KV and states like the CPU. A second call is refused.
    absl::Status init_caches(const ModelConfig& c, const CacheLayout& layout) override {
        if (caches_ready_) return absl::FailedPreconditionError("cuda: init_caches called twice");
        const int64_t n_attn = c.n_attention_layers();
        int64_t kv_row_bytes = 0;
        size_t kv_bytes = 0;
        if (n_attn > 0) {
            if (layout.block_tokens <= 0 || layout.n_blocks <= 0)
                return absl::InvalidArgumentError("KV cache: block_tokens and n_blocks must be positive");
            auto rb = row_bytes(layout.kv_type, c.head_dim);
            const DType t = layout.kv_type;
            if (!rb.ok() || !(t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0 || t == DType::Q4_0))
                return absl::InvalidArgumentError(absl::StrCat("cuda: KV cache type ", dtype_info(t).name,
                                                               " is not supported for head_dim ", c.head_dim));
            if (!attn_head_dim_supported(c.head_dim))
                return absl::InvalidArgumentError(absl::StrCat("cuda: attention head_dim ", c.head_dim,
                                                               " is not supported (32..256 in steps of 32)"));
            kv_row_bytes = int64_t(*rb);
            kv_bytes = size_t(layout.n_blocks) * layout.block_tokens * c.n_kv_heads * kv_row_bytes;
        }
        const int64_t conv_floats = (c.conv_kernel - 1) * c.conv_dim();
        const int64_t s_floats = c.lin_v_heads * c.lin_k_dim * c.lin_v_dim;
        const int64_t n_gdn = c.n_gdn_layers();
        if (n_gdn > 0 && layout.n_state_slots <= 0)
            return absl::InvalidArgumentError("state pool: n_state_slots must be positive");
        const size_t sbytes = size_t(std::max<int32_t>(layout.n_state_slots, 0)) * n_gdn * (conv_floats + s_floats) * 4;

        std::vector<KvStore> kv;
        DeviceBuffer states;
        absl::Status st;
        guard([&] {
            for (int64_t i = 0; i < n_attn; ++i) {
                KvStore& s = kv.emplace_back();
                if (!s.k.alloc(kv_bytes) || !s.v.alloc(kv_bytes)) {
                    st = absl::ResourceExhaustedError(
                        absl::StrCat("cuda: KV cache needs ", 2 * kv_bytes, " bytes per layer, ", n_attn, " layers"));
                    return;
                }
                DG_CUDA_CHECK(cudaMemset(s.k.get(), 0, kv_bytes));
                DG_CUDA_CHECK(cudaMemset(s.v.get(), 0, kv_bytes));
            }
            if (sbytes && !states.alloc(sbytes)) {
                st = absl::ResourceExhaustedError(absl::StrCat("cuda: state slots need ", sbytes, " bytes"));
                return;
            }
            if (sbytes) DG_CUDA_CHECK(cudaMemset(states.get(), 0, sbytes));
        });
        DG_RETURN_IF_ERROR(take_error());
        DG_RETURN_IF_ERROR(st);
        layout_ = layout;
        Hkv_ = c.n_kv_heads;
        kv_row_bytes_ = kv_row_bytes;
        conv_floats_ = conv_floats, s_floats_ = s_floats, n_gdn_ = n_gdn;
        kv_ = std::move(kv);
        states_buf_ = std::move(states);
        states_ = static_cast<float*>(states_buf_.get());
        caches_ready_ = true;
        return absl::OkStatus();
    }
    const CacheLayout& cache_layout() const override { return layout_; }
    int64_t state_floats() const override { return n_gdn_ * (conv_floats_ + s_floats_); }
    float* slot(int32_t s) { return states_ + int64_t(s) * state_floats(); }
    void state_clear(int32_t s) override {
        guard([&] { DG_CUDA_CHECK(cudaMemset(slot(s), 0, state_floats() * 4)); });
    }
    void state_copy(int32_t dst, int32_t src) override {
        if (dst == src) return;
        guard([&] { DG_CUDA_CHECK(cudaMemcpy(slot(dst), slot(src), state_floats() * 4, cudaMemcpyDeviceToDevice)); });
    }
    void state_download(int32_t s, float* host) override {
        guard([&] { DG_CUDA_CHECK(cudaMemcpy(host, slot(s), state_floats() * 4, cudaMemcpyDeviceToHost)); });
    }
    void state_upload(int32_t s, const float* host) override {
        guard([&] { DG_CUDA_CHECK(cudaMemcpy(slot(s), host, state_floats() * 4, cudaMemcpyHostToDevice)); });
    }
    void kv_copy_block(int32_t dst, int32_t src) override {
        if (dst == src) return;
        const size_t block_bytes = size_t(layout_.block_tokens) * Hkv_ * kv_row_bytes_;
        guard([&] {
            for (KvStore& l : kv_) {
                DG_CUDA_CHECK(cudaMemcpy(l.k.bytes() + dst * block_bytes, l.k.bytes() + src * block_bytes, block_bytes,
                                         cudaMemcpyDeviceToDevice));
                DG_CUDA_CHECK(cudaMemcpy(l.v.bytes() + dst * block_bytes, l.v.bytes() + src * block_bytes, block_bytes,
                                         cudaMemcpyDeviceToDevice));
            }
        });
    }
    // Same byte layout as the CPU backend: per layer, the block's K bytes then its V bytes.
    int64_t kv_block_bytes() const override {
        return 2 * int64_t(kv_.size()) * int64_t(layout_.block_tokens) * Hkv_ * kv_row_bytes_;
    }
    void kv_download_block(int32_t b, uint8_t* host) override {
        const size_t bb = size_t(layout_.block_tokens) * Hkv_ * kv_row_bytes_;
        guard([&] {
            uint8_t* h = host;
            for (KvStore& l : kv_) {
                DG_CUDA_CHECK(cudaMemcpy(h, l.k.bytes() + b * bb, bb, cudaMemcpyDeviceToHost));
                DG_CUDA_CHECK(cudaMemcpy(h + bb, l.v.bytes() + b * bb, bb, cudaMemcpyDeviceToHost));
                h += 2 * bb;
            }
        });
    }
    void kv_upload_block(int32_t b, const uint8_t* host) override {
        const size_t bb = size_t(layout_.block_tokens) * Hkv_ * kv_row_bytes_;
        guard([&] {
            const uint8_t* h = host;
            for (KvStore& l : kv_) {
                DG_CUDA_CHECK(cudaMemcpy(l.k.bytes() + b * bb, h, bb, cudaMemcpyHostToDevice));
                DG_CUDA_CHECK(cudaMemcpy(l.v.bytes() + b * bb, h + bb, bb, cudaMemcpyHostToDevice));
                h += 2 * bb;
            }
        });
    }

    void embed(const int32_t* tokens, int32_t n, const Matrix& table, float* x) override {
        guard([&] {
            int32_t* d = tok_.need(n);
            DG_CUDA_CHECK(cudaMemcpy(d, tokens, size_t(n) * 4, cudaMemcpyHostToDevice));
            cuda::embed(d, n, dev(table), x, 0);
        });
    }
    void rmsnorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* y) override {
        guard([&] { cuda::rmsnorm(x, dvec(w), rows, dim, eps, y, 0); });
    }
    void matmul(const float* x, int32_t n, const Matrix& W, float* y) override {
        guard([&] { mm_(x, n, dev(W), y, 0); });
    }
    void add(float* y, const float* x, int64_t n) override {
        guard([&] { cuda::add(y, x, n, 0); });
    }
    void swiglu(const float* g, const float* u, int64_t count, float* out) override {
        guard([&] { cuda::swiglu(g, u, count, out, 0); });
    }
    void copy_rows(const float* x, const int32_t* rows, int32_t n_rows, int64_t dim, float* y) override {
        guard([&] { copy_rows_impl(x, rows, n_rows, dim, y); });
    }
    void copy_rows_impl(const float* x, const int32_t* rows, int32_t n_rows, int64_t dim, float* y) {
        int32_t* d = rows_.need(std::max(n_rows, 1));
        DG_CUDA_CHECK(cudaMemcpy(d, rows, size_t(n_rows) * 4, cudaMemcpyHostToDevice));
        cuda::copy_rows(x, d, n_rows, dim, y, 0);
    }

    // Decode slices (len 1) run the fused decode kernel, longer ones the chunked prefill kernel
    // (engine/cuda/gdn*.cu); their descriptors go to the device decode-first. The token-by-token kernels
    // (gdn_mixer_reference) are the tests' reference, used here only for dk > 128, which no Qwen3.5 has.
    void gdn_mixer(const StepBatch& b, int32_t layer, const GdnDims& d, const GdnWeights& w, float eps, float* qkv,
                   const float* z, const float* bp, const float* ap, float* o) override {
        guard([&] { gdn_mixer_impl(b, layer, d, w, eps, qkv, z, bp, ap, o); });
    }
    void gdn_mixer_impl(const StepBatch& b, int32_t layer, const GdnDims& d, const GdnWeights& w, float eps, float* qkv,
                        const float* z, const float* bp, const float* ap, float* o) {
        std::vector<DevSeq> ds;
        for (int decode = 1; decode >= 0; --decode)
            for (const SeqSlice& s : b.seqs)
                if (s.len > 0 && (s.len == 1) == bool(decode))
                    ds.push_back(DevSeq{s.begin, s.len, s.pos0, s.state_slot, nullptr});
        if (ds.empty()) return;
        const int32_t n_dec = int32_t(std::count_if(ds.begin(), ds.end(), [](const DevSeq& s) { return s.len == 1; }));
        DG_CUDA_CHECK(cudaMemcpy(gdn_seqs_.need(ds.size()), ds.data(), ds.size() * sizeof(DevSeq), cudaMemcpyHostToDevice));
        GdnLayerState st{states_ + int64_t(layer) * (conv_floats_ + s_floats_), state_floats(), conv_floats_};
        const GdnLayerArgs args{d, dvec(w.conv_w.data()), dvec(w.dt_bias.data()), dvec(w.ssm_a.data()),
                                dvec(w.norm_w.data()), eps, qkv, z, bp, ap, o, st};
        if (!gdn_fast_supported(d)) {
            static bool warned = false;
            if (!warned) std::fprintf(stderr, "deltagate cuda: GDN dk %lld > %lld: running the token-by-token reference kernels\n",
                                      (long long)d.dk, (long long)kGdnMaxDk);
            warned = true;
            float* scratch = gdn_scratch_.need(size_t(2) * b.n_tokens() * d.Hv);
            cuda::gdn_mixer_reference(args, gdn_seqs_.ptr, int32_t(ds.size()), b.n_tokens(), scratch, 0);
            return;
        }
        // The arrival counters must start zeroed; the kernels leave them zero, so zero only new memory.
        const size_t words = size_t(gdn_arrival_words(n_dec, d));
        const size_t cap = gdn_arrivals_.cap;
        uint32_t* arrivals = gdn_arrivals_.need(words);
        if (gdn_arrivals_.cap != cap) DG_CUDA_CHECK(cudaMemset(arrivals, 0, gdn_arrivals_.cap * sizeof(uint32_t)));
        const GdnWorkspace ws{gdn_scratch_.need(size_t(gdn_workspace_floats(n_dec, d))), arrivals};
        cuda::gdn_mixer(args, gdn_seqs_.ptr, ds.data(), n_dec, int32_t(ds.size()) - n_dec, ws, GdnTiling{}, 0);
    }

    void attention(const StepBatch& b, int32_t layer, const AttnDims& d, const AttnWeights& w, float eps,
                   const float* qg, const float* k, const float* v, float* out) override {
        guard([&] { attention_impl(b, layer, d, w, eps, qg, k, v, out); });
    }
    // One upload per layer: the sequence descriptors (decode first, then prefill) and their block tables
    // in one buffer, then the attention kernels (engine/cuda/attention.cu).
    void attention_impl(const StepBatch& b, int32_t layer, const AttnDims& d, const AttnWeights& w, float eps,
                        const float* qg, const float* k, const float* v, float* out) {
        std::vector<DevSeq> ds;
        std::vector<int32_t> ids;
        std::vector<size_t> off;
        for (int decode = 1; decode >= 0; --decode)
            for (const SeqSlice& s : b.seqs)
                if (s.len > 0 && (s.len == 1) == bool(decode)) {
                    ds.push_back(DevSeq{s.begin, s.len, s.pos0, s.state_slot, nullptr});
                    off.push_back(ids.size());
                    ids.insert(ids.end(), s.blocks, s.blocks + s.n_blocks);
                }
        if (ds.empty()) return;
        const int32_t n_dec = int32_t(std::count_if(ds.begin(), ds.end(), [](const DevSeq& s) { return s.len == 1; }));
        const size_t head = ds.size() * sizeof(DevSeq), bytes = head + ids.size() * sizeof(int32_t);
        uint8_t* dbuf = attn_meta_.need(bytes);
        const int32_t* dblocks = reinterpret_cast<const int32_t*>(dbuf + head);
        for (size_t i = 0; i < ds.size(); ++i) ds[i].blocks = dblocks + off[i];
        std::vector<uint8_t> host(bytes);
        std::memcpy(host.data(), ds.data(), head);
        if (!ids.empty()) std::memcpy(host.data() + head, ids.data(), ids.size() * sizeof(int32_t));
        DG_CUDA_CHECK(cudaMemcpy(dbuf, host.data(), bytes, cudaMemcpyHostToDevice));
        const int64_t ws = int64_t(n_dec) * d.Hq * cuda::attention_decode_splits(n_dec, d) * (d.hd + 2);
        float* workspace = attn_ws_.need(size_t(std::max<int64_t>(ws, 1)));
        KvLayerDev kv{layout_.kv_type, layout_.block_tokens, kv_row_bytes_, kv_[layer].k.bytes(), kv_[layer].v.bytes()};
        cuda::attention(reinterpret_cast<const DevSeq*>(dbuf), ds.data(), n_dec, int32_t(ds.size()) - n_dec, d,
                        dvec(w.q_norm.data()), dvec(w.k_norm.data()), eps, qg, k, v, out, kv, workspace, 0);
    }

    // Routing on the host (one small device->host copy per layer), experts as grouped matmuls, and a
    // deterministic combine: each token gathers its experts' rows in expert order (no atomics).
    void moe_ffn(const float* x, int32_t n, const MoeWeights& w, int64_t top_k, float* y) override {
        guard([&] { moe_ffn_impl(x, n, w, top_k, y); });
    }
    void moe_ffn_impl(const float* x, int32_t n, const MoeWeights& w, int64_t top_k, float* y) {
        const int64_t E = w.router.rows, H = w.router.cols;
        float* logits = moe_logits_.need(size_t(n) * E);
        // The router always runs exactly (as on the CPU): which experts a token visits does not depend on
        // the matmul path.
        cuda::matmul_exact(x, n, dev(w.router), logits, 0);
        std::vector<float> p(size_t(n) * E);
        DG_CUDA_CHECK(cudaMemcpy(p.data(), logits, p.size() * 4, cudaMemcpyDeviceToHost));
        const auto routed = route_top_k(p.data(), n, E, top_k);
        const int64_t Is = w.shared.gate.rows;
        float* g = moe_a_.need(size_t(n) * std::max<int64_t>(Is, 1));
        float* u = moe_b_.need(size_t(n) * std::max<int64_t>(Is, 1));
        mm_(x, n, dev(w.shared.gate), g, 0);
        mm_(x, n, dev(w.shared.up), u, 0);
        cuda::swiglu(g, u, int64_t(n) * Is, g, 0);
        mm_(g, n, dev(w.shared.down), y, 0);
        float* sg = moe_gate_.need(n);
        mm_(x, n, dev(w.shared_gate), sg, 0);
        cuda::scale_rows_sigmoid(y, sg, n, H, 0);
        // Expert outputs go to consecutive rows of one buffer; src[t][j] names token t's j-th row there.
        const int32_t k = int32_t(top_k);
        std::vector<int32_t> src(size_t(n) * k, -1);
        std::vector<float> wts(size_t(n) * k, 0.f);
        std::vector<int32_t> filled(n, 0);
        int32_t total = 0;
        for (const auto& toks : routed) total += int32_t(toks.size());
        float* out_rows = moe_y_.need(size_t(std::max(total, 1)) * H);
        int32_t next = 0;
        for (int64_t e = 0; e < E; ++e) {
            const auto& toks = routed[e];
            if (toks.empty()) continue;
            const int32_t m = int32_t(toks.size());
            const int64_t Ie = w.experts[e].gate.rows;
            std::vector<int32_t> rows(m);
            for (int32_t i = 0; i < m; ++i) {
                const int32_t t = toks[i].first;
                rows[i] = t;
                DG_CHECK(filled[t] < k, "token %d routed to more than %d experts", t, k);
                src[size_t(t) * k + filled[t]] = next + i;
                wts[size_t(t) * k + filled[t]] = toks[i].second;
                ++filled[t];
            }
            float* xs = moe_x_.need(size_t(m) * H);
            copy_rows_impl(x, rows.data(), m, H, xs);
            float* ge = moe_a_.need(size_t(m) * Ie);
            float* ue = moe_b_.need(size_t(m) * Ie);
            mm_(xs, m, dev(w.experts[e].gate), ge, 0);
            mm_(xs, m, dev(w.experts[e].up), ue, 0);
            cuda::swiglu(ge, ue, int64_t(m) * Ie, ge, 0);
            mm_(ge, m, dev(w.experts[e].down), out_rows + int64_t(next) * H, 0);
            next += m;
        }
        int32_t* dsrc = moe_src_.need(src.size());
        float* dw = moe_w_.need(wts.size());
        DG_CUDA_CHECK(cudaMemcpy(dsrc, src.data(), src.size() * 4, cudaMemcpyHostToDevice));
        DG_CUDA_CHECK(cudaMemcpy(dw, wts.data(), wts.size() * 4, cudaMemcpyHostToDevice));
        cuda::gather_add_rows(out_rows, dsrc, dw, n, k, H, y, 0);
    }

    // Sampling where the logits are (engine/cuda/sampling.cu): one asynchronous upload of the rows'
    // descriptors and penalty entries from pinned memory, one launch, and one synchronous download of
    // the tokens (and requested logprobs): a few hundred bytes per row instead of the vocab-sized rows.
    absl::Status sample(const float* logits, int32_t n_logit_rows, int64_t vocab, std::span<const SampleRow> rows,
                        std::vector<SampledToken>* out) override {
        DG_RETURN_IF_ERROR(validate_sample_rows(rows, n_logit_rows, vocab));
        out->assign(rows.size(), SampledToken{});
        if (rows.empty()) return absl::OkStatus();
        std::vector<cuda::SampleOutDev> got(rows.size());
        guard([&] { sample_impl(logits, vocab, rows, got.data()); });
        DG_RETURN_IF_ERROR(take_error());
        for (size_t i = 0; i < rows.size(); ++i) {
            const cuda::SampleOutDev& g = got[i];
            SampledToken& t = (*out)[i];
            t.token = g.token;
            if (!rows[i].logprob && rows[i].top_logprobs == 0) continue;
            t.lp.logprob = g.logprob;
            for (int32_t j = 0; j < g.n_top; ++j) t.lp.top.emplace_back(g.top_id[j], g.top_lp[j]);
        }
        return absl::OkStatus();
    }
    void sample_impl(const float* logits, int64_t vocab, std::span<const SampleRow> rows, cuda::SampleOutDev* host_out) {
        const cuda::SamplePlan plan = cuda::plan_sample(rows, vocab);
        const size_t n = plan.rows.size(), rows_bytes = n * sizeof(cuda::SampleRowDev);
        const size_t bytes = rows_bytes + plan.pens.size() * sizeof(cuda::SamplePenaltyDev);
        uint8_t* staging = sample_staging_.need(bytes);
        std::memcpy(staging, plan.rows.data(), rows_bytes);
        if (!plan.pens.empty()) std::memcpy(staging + rows_bytes, plan.pens.data(), bytes - rows_bytes);
        uint8_t* in = sample_in_.need(bytes);
        DG_CUDA_CHECK(cudaMemcpyAsync(in, staging, bytes, cudaMemcpyHostToDevice, 0));
        cuda::SampleWorkspace ws{};
        if (plan.n_adj) ws.adj = sample_adj_.need(size_t(plan.n_adj) * vocab);
        if (plan.n_sort) {
            ws.keys = sample_keys_.need(size_t(plan.n_sort) * cuda::sample_key_stride(vocab));
            ws.prob = sample_prob_.need(size_t(plan.n_sort) * vocab);
        }
        cuda::SampleOutDev* dout = sample_out_.need(n);
        cuda::sample_rows(logits, vocab, reinterpret_cast<const cuda::SampleRowDev*>(in), int32_t(n),
                          reinterpret_cast<const cuda::SamplePenaltyDev*>(in + rows_bytes), ws, dout, 0);
        DG_CUDA_CHECK(cudaMemcpy(host_out, dout, n * sizeof(cuda::SampleOutDev), cudaMemcpyDeviceToHost));
    }

private:
    // Pinned host memory that only grows (the staging buffer of asynchronous uploads). Reused only after
    // the step's final synchronous download, so an upload never reads a buffer being rewritten.
    struct PinnedScratch {
        uint8_t* ptr = nullptr;
        size_t cap = 0;
        uint8_t* need(size_t n) {
            if (n > cap) {
                if (ptr) DG_CUDA_CHECK(cudaFreeHost(ptr));
                ptr = nullptr, cap = 0;
                const size_t want = std::max<size_t>(n, 4096);
                DG_CUDA_CHECK(cudaMallocHost(&ptr, want));
                cap = want;
            }
            return ptr;
        }
        ~PinnedScratch() {
            if (ptr) cudaFreeHost(ptr);
        }
    };

    // Owns one device allocation (KV layers, the state slots): freed with the backend, or when an
    // init_caches that allocated it fails part way.
    class DeviceBuffer {
    public:
        DeviceBuffer() = default;
        DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
        DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
            std::swap(p_, o.p_);
            return *this;
        }
        ~DeviceBuffer() {
            if (p_) cudaFree(p_);
        }
        bool alloc(size_t bytes) {
            if (cudaMalloc(&p_, bytes) == cudaSuccess) return true;
            p_ = nullptr;
            cudaGetLastError();  // out of memory is not sticky: clear it
            return false;
        }
        void* get() const { return p_; }
        uint8_t* bytes() const { return static_cast<uint8_t*>(p_); }

    private:
        void* p_ = nullptr;
    };
    struct KvStore {
        DeviceBuffer k, v;
    };

    // Runs one Backend call's device work. A DeviceError becomes the pending error (take_error); with an
    // error pending, calls do nothing, so a failed step never computes on half-made results. After an
    // error the device is probed: a sticky error (illegal address, lost context) marks it lost for good.
    template <typename F>
    void guard(F&& f) {
        if (!error_.ok()) return;
        try {
            f();
        } catch (const DeviceError& e) {
            cudaGetLastError();  // clears a non-sticky error
            lost_ = cudaDeviceSynchronize() != cudaSuccess;
            error_ = lost_ ? absl::UnavailableError(absl::StrCat("cuda device lost: ", e.what()))
                           : absl::InternalError(absl::StrCat("cuda: ", e.what()));
        }
    }

    absl::Status upload(const uint8_t* host, uint64_t bytes) {
        if (!host || dev_data_.count(host)) return absl::OkStatus();
        uint8_t* d = nullptr;
        if (cudaMalloc(&d, bytes) != cudaSuccess) {
            cudaGetLastError();
            return absl::ResourceExhaustedError(absl::StrCat("cuda: weights do not fit: cannot allocate ", bytes, " bytes"));
        }
        DG_CUDA_CHECK(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice));
        dev_data_[host] = d;
        return absl::OkStatus();
    }
    absl::Status upload_vec(const std::vector<float>& v) {
        if (v.empty() || dev_vec_.count(v.data())) return absl::OkStatus();
        float* d = nullptr;
        if (cudaMalloc(&d, v.size() * 4) != cudaSuccess) {
            cudaGetLastError();
            return absl::ResourceExhaustedError("cuda: weights do not fit");
        }
        DG_CUDA_CHECK(cudaMemcpy(d, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
        dev_vec_[v.data()] = d;
        return absl::OkStatus();
    }
    Matrix dev(const Matrix& m) const {
        Matrix d = m;
        auto it = dev_data_.find(m.data);
        DG_CHECK(it != dev_data_.end(), "matrix not uploaded by prepare_weights");
        d.data = it->second;
        return d;
    }
    const float* dvec(const float* host) const {
        auto it = dev_vec_.find(host);
        DG_CHECK(it != dev_vec_.end(), "vector not uploaded by prepare_weights");
        return it->second;
    }
    bool exact_;
    Matmul mm_;  // the matmul dispatcher and its workspaces (cuBLAS handle, activation blocks, bf16 tiles)
    CacheLayout layout_;
    int64_t Hkv_ = 0, kv_row_bytes_ = 0, conv_floats_ = 0, s_floats_ = 0, n_gdn_ = 0;
    std::vector<KvStore> kv_;
    DeviceBuffer states_buf_;
    float* states_ = nullptr;  // [slot][gdn layer][conv (K-1)*C | S Hv*dk*dv], as the CPU backend
    bool caches_ready_ = false;
    absl::Status error_;       // pending device error (take_error)
    bool lost_ = false;        // the device reported a sticky error
    std::unordered_map<const uint8_t*, uint8_t*> dev_data_;
    std::unordered_map<const float*, float*> dev_vec_;
    Scratch<int32_t> tok_, rows_, moe_src_;
    Scratch<uint8_t> attn_meta_;  // attention's sequence descriptors + block tables
    Scratch<DevSeq> gdn_seqs_;
    Scratch<uint32_t> gdn_arrivals_;
    Scratch<float> gdn_scratch_, attn_ws_, moe_logits_, moe_a_, moe_b_, moe_gate_, moe_x_, moe_y_, moe_w_;
    PinnedScratch sample_staging_;
    Scratch<uint8_t> sample_in_;
    Scratch<float> sample_adj_;
    Scratch<uint64_t> sample_keys_;
    Scratch<double> sample_prob_;
    Scratch<cuda::SampleOutDev> sample_out_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(bool exact) { return std::make_unique<CudaBackend>(exact); }

}  // namespace dg::cuda
