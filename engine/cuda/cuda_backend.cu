// The CUDA backend, v0 (correctness first): device memory for weights, activations, KV blocks and
// state slots, and every op of engine/backend.h as a plain kernel (engine/cuda/*.cu). Mirrors
// engine/cpu/cpu_backend.cpp op for op so tests/unit/gpu compares the two. GDN runs the fused decode
// and chunked prefill kernels (docs/cuda.md). Not yet: tensor-core GEMM, split-K attention, CUDA graphs
// (issue 6).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/backend.h"
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/cuda_device.h"
#include "engine/cuda/ops.cuh"
#include "engine/moe_routing.h"
#include "engine/status.h"

namespace dg::cuda {

void fail(const char* expr, const char* file, int line, cudaError_t err) {
    std::fprintf(stderr, "%s:%d: CUDA error %s (%s) in %s\n", file, line, cudaGetErrorName(err), cudaGetErrorString(err),
                 expr);
    std::abort();
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
            cap = std::max(n, cap * 2);
            DG_CUDA_CHECK(cudaMalloc(&ptr, cap * sizeof(T)));
        }
        return ptr;
    }
    ~Scratch() {
        if (ptr) cudaFree(ptr);
    }
};

class CudaBackend final : public Backend {
public:
    ~CudaBackend() override {
        for (auto& [h, d] : dev_data_) cudaFree(d);
        for (auto& [h, d] : dev_vec_) cudaFree(d);
        for (auto& l : kv_) cudaFree(l.k), cudaFree(l.v);
        if (states_) cudaFree(states_);
    }
    std::string name() const override { return "cuda"; }

    absl::StatusOr<float*> alloc_f32(int64_t n) override {
        float* p = nullptr;
        if (cudaMalloc(&p, size_t(n) * sizeof(float)) != cudaSuccess) {
            cudaGetLastError();
            return absl::ResourceExhaustedError(absl::StrCat("cuda: cannot allocate ", n * 4, " bytes of device memory"));
        }
        return p;
    }
    void free(float* p) override { DG_CUDA_CHECK(cudaFree(p)); }
    void to_host(const float* src, float* dst, int64_t n) override {
        DG_CUDA_CHECK(cudaMemcpy(dst, src, size_t(n) * 4, cudaMemcpyDeviceToHost));
    }
    void from_host(const float* src, float* dst, int64_t n) override {
        DG_CUDA_CHECK(cudaMemcpy(dst, src, size_t(n) * 4, cudaMemcpyHostToDevice));
    }

    absl::Status prepare_weights(const ModelWeights& w) override {
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

    absl::Status init_caches(const ModelConfig& c, const CacheLayout& layout) override {
        layout_ = layout;
        Hkv_ = c.n_kv_heads;
        if (c.n_attention_layers() > 0) {
            auto rb = row_bytes(layout.kv_type, c.head_dim);
            const DType t = layout.kv_type;
            if (!rb.ok() || !(t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0 || t == DType::Q4_0))
                return absl::InvalidArgumentError(absl::StrCat("cuda: KV cache type ", dtype_info(t).name,
                                                               " is not supported for head_dim ", c.head_dim));
            kv_row_bytes_ = int64_t(*rb);
            const size_t bytes = size_t(layout.n_blocks) * layout.block_tokens * c.n_kv_heads * kv_row_bytes_;
            for (int64_t i = 0; i < c.n_attention_layers(); ++i) {
                KvStore s;
                if (cudaMalloc(&s.k, bytes) != cudaSuccess || cudaMalloc(&s.v, bytes) != cudaSuccess) {
                    cudaGetLastError();
                    return absl::ResourceExhaustedError(absl::StrCat("cuda: KV cache needs ", 2 * bytes, " bytes per layer"));
                }
                kv_.push_back(s);
            }
        }
        conv_floats_ = (c.conv_kernel - 1) * c.conv_dim();
        s_floats_ = c.lin_v_heads * c.lin_k_dim * c.lin_v_dim;
        n_gdn_ = c.n_gdn_layers();
        const size_t sbytes = size_t(layout.n_state_slots) * state_floats() * 4;
        if (sbytes && cudaMalloc(&states_, sbytes) != cudaSuccess) {
            cudaGetLastError();
            return absl::ResourceExhaustedError(absl::StrCat("cuda: state slots need ", sbytes, " bytes"));
        }
        if (sbytes) DG_CUDA_CHECK(cudaMemset(states_, 0, sbytes));
        return absl::OkStatus();
    }
    const CacheLayout& cache_layout() const override { return layout_; }
    int64_t state_floats() const override { return n_gdn_ * (conv_floats_ + s_floats_); }
    float* slot(int32_t s) { return states_ + int64_t(s) * state_floats(); }
    void state_clear(int32_t s) override { DG_CUDA_CHECK(cudaMemset(slot(s), 0, state_floats() * 4)); }
    void state_copy(int32_t dst, int32_t src) override {
        if (dst != src) DG_CUDA_CHECK(cudaMemcpy(slot(dst), slot(src), state_floats() * 4, cudaMemcpyDeviceToDevice));
    }
    void state_download(int32_t s, float* host) override {
        DG_CUDA_CHECK(cudaMemcpy(host, slot(s), state_floats() * 4, cudaMemcpyDeviceToHost));
    }
    void state_upload(int32_t s, const float* host) override {
        DG_CUDA_CHECK(cudaMemcpy(slot(s), host, state_floats() * 4, cudaMemcpyHostToDevice));
    }
    void kv_copy_block(int32_t dst, int32_t src) override {
        if (dst == src) return;
        const size_t block_bytes = size_t(layout_.block_tokens) * Hkv_ * kv_row_bytes_;
        for (KvStore& l : kv_) {
            DG_CUDA_CHECK(cudaMemcpy(l.k + dst * block_bytes, l.k + src * block_bytes, block_bytes, cudaMemcpyDeviceToDevice));
            DG_CUDA_CHECK(cudaMemcpy(l.v + dst * block_bytes, l.v + src * block_bytes, block_bytes, cudaMemcpyDeviceToDevice));
        }
    }

    void embed(const int32_t* tokens, int32_t n, const Matrix& table, float* x) override {
        int32_t* d = tok_.need(n);
        DG_CUDA_CHECK(cudaMemcpy(d, tokens, size_t(n) * 4, cudaMemcpyHostToDevice));
        cuda::embed(d, n, dev(table), x, 0);
    }
    void rmsnorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* y) override {
        cuda::rmsnorm(x, dvec(w), rows, dim, eps, y, 0);
    }
    void matmul(const float* x, int32_t n, const Matrix& W, float* y) override { cuda::matmul(x, n, dev(W), y, 0); }
    void add(float* y, const float* x, int64_t n) override { cuda::add(y, x, n, 0); }
    void swiglu(const float* g, const float* u, int64_t count, float* out) override { cuda::swiglu(g, u, count, out, 0); }
    void copy_rows(const float* x, const int32_t* rows, int32_t n_rows, int64_t dim, float* y) override {
        int32_t* d = rows_.need(std::max(n_rows, 1));
        DG_CUDA_CHECK(cudaMemcpy(d, rows, size_t(n_rows) * 4, cudaMemcpyHostToDevice));
        cuda::copy_rows(x, d, n_rows, dim, y, 0);
    }

    // Decode slices (len 1) run the fused decode kernel, longer ones the chunked prefill kernel
    // (engine/cuda/gdn*.cu); their descriptors go to the device decode-first. The token-by-token kernels
    // (gdn_mixer_reference) are the tests' reference, used here only for dk > 128, which no Qwen3.5 has.
    void gdn_mixer(const StepBatch& b, int32_t layer, const GdnDims& d, const GdnWeights& w, float eps, float* qkv,
                   const float* z, const float* bp, const float* ap, float* o) override {
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
        std::vector<SeqSlice> seqs = upload_seqs(b);
        size_t need = 1;
        for (const SeqSlice& s : seqs) need = std::max(need, size_t(s.len) * d.Hq * (size_t(s.pos0) + s.len));
        float* scores = scores_.need(need);
        KvLayerDev kv{layout_.kv_type, layout_.block_tokens, kv_row_bytes_, kv_[layer].k, kv_[layer].v};
        cuda::attention(seqs.data(), int32_t(seqs.size()), d, dvec(w.q_norm.data()), dvec(w.k_norm.data()), eps, qg, k,
                        v, out, kv, scores, 0);
    }

    // Routing on the host (one small device->host copy per layer), experts as grouped matmuls.
    void moe_ffn(const float* x, int32_t n, const MoeWeights& w, int64_t top_k, float* y) override {
        const int64_t E = w.router.rows, H = w.router.cols;
        float* logits = moe_logits_.need(size_t(n) * E);
        matmul(x, n, w.router, logits);
        std::vector<float> p(size_t(n) * E);
        DG_CUDA_CHECK(cudaMemcpy(p.data(), logits, p.size() * 4, cudaMemcpyDeviceToHost));
        const auto routed = route_top_k(p.data(), n, E, top_k);
        const int64_t Is = w.shared.gate.rows;
        float* g = moe_a_.need(size_t(n) * std::max<int64_t>(Is, 1));
        float* u = moe_b_.need(size_t(n) * std::max<int64_t>(Is, 1));
        matmul(x, n, w.shared.gate, g);
        matmul(x, n, w.shared.up, u);
        swiglu(g, u, int64_t(n) * Is, g);
        matmul(g, n, w.shared.down, y);
        float* sg = moe_gate_.need(n);
        matmul(x, n, w.shared_gate, sg);
        cuda::scale_rows_sigmoid(y, sg, n, H, 0);
        for (int64_t e = 0; e < E; ++e) {
            const auto& toks = routed[e];
            if (toks.empty()) continue;
            const int32_t m = int32_t(toks.size());
            const int64_t Ie = w.experts[e].gate.rows;
            std::vector<int32_t> rows(m);
            std::vector<float> wts(m);
            for (int32_t i = 0; i < m; ++i) rows[i] = toks[i].first, wts[i] = toks[i].second;
            float* xs = moe_x_.need(size_t(m) * H);
            copy_rows(x, rows.data(), m, H, xs);
            float* ge = moe_a_.need(size_t(m) * Ie);
            float* ue = moe_b_.need(size_t(m) * Ie);
            matmul(xs, m, w.experts[e].gate, ge);
            matmul(xs, m, w.experts[e].up, ue);
            swiglu(ge, ue, int64_t(m) * Ie, ge);
            float* ye = moe_y_.need(size_t(m) * H);
            matmul(ge, m, w.experts[e].down, ye);
            int32_t* drows = rows_.need(m);
            float* dw = moe_w_.need(m);
            DG_CUDA_CHECK(cudaMemcpy(drows, rows.data(), size_t(m) * 4, cudaMemcpyHostToDevice));
            DG_CUDA_CHECK(cudaMemcpy(dw, wts.data(), size_t(m) * 4, cudaMemcpyHostToDevice));
            cuda::scatter_add_rows(ye, drows, dw, m, H, y, 0);
        }
    }

private:
    struct KvStore {
        uint8_t* k = nullptr;
        uint8_t* v = nullptr;
    };

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
    // Copies the batch's block tables and sequence descriptors to the device; returns the slices with
    // `blocks` pointing at the device copies.
    std::vector<SeqSlice> upload_seqs(const StepBatch& b) {
        std::vector<int32_t> all;
        std::vector<size_t> off;
        for (const SeqSlice& s : b.seqs) {
            off.push_back(all.size());
            all.insert(all.end(), s.blocks, s.blocks + s.n_blocks);
        }
        int32_t* dblocks = blocks_.need(std::max<size_t>(all.size(), 1));
        if (!all.empty()) DG_CUDA_CHECK(cudaMemcpy(dblocks, all.data(), all.size() * 4, cudaMemcpyHostToDevice));
        std::vector<SeqSlice> out(b.seqs);
        std::vector<DevSeq> ds;
        for (size_t i = 0; i < out.size(); ++i) {
            out[i].blocks = dblocks + off[i];
            ds.push_back(DevSeq{out[i].begin, out[i].len, out[i].pos0, out[i].state_slot, out[i].blocks});
        }
        DG_CUDA_CHECK(cudaMemcpy(dev_seqs_.need(ds.size()), ds.data(), ds.size() * sizeof(DevSeq), cudaMemcpyHostToDevice));
        return out;
    }

    CacheLayout layout_;
    int64_t Hkv_ = 0, kv_row_bytes_ = 0, conv_floats_ = 0, s_floats_ = 0, n_gdn_ = 0;
    std::vector<KvStore> kv_;
    float* states_ = nullptr;  // [slot][gdn layer][conv (K-1)*C | S Hv*dk*dv], as the CPU backend
    std::unordered_map<const uint8_t*, uint8_t*> dev_data_;
    std::unordered_map<const float*, float*> dev_vec_;
    Scratch<int32_t> tok_, rows_, blocks_;
    Scratch<DevSeq> dev_seqs_, gdn_seqs_;
    Scratch<uint32_t> gdn_arrivals_;
    Scratch<float> gdn_scratch_, scores_, moe_logits_, moe_a_, moe_b_, moe_gate_, moe_x_, moe_y_, moe_w_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(); }

}  // namespace dg::cuda
