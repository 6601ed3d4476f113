// The CUDA backend: device memory for weights, activations, KV blocks and state slots, and every op of
// engine/backend.h as kernels (engine/cuda/*.cu). Mirrors engine/cpu/cpu_backend.cpp op for op so
// tests/unit/gpu compares the two. GDN runs the fused decode and chunked prefill kernels, attention the
// split-K decode and tiled prefill kernels, matmuls the GEMV / GEMM / exact dispatcher (matmul.cuh), MoE
// routes on the device (docs/cuda.md).
//
// The step (docs/cuda.md "The step"): one stream per backend (one backend per worker); begin_step packs
// the step's metadata (token ids, logit rows, block tables, sequence descriptors, sampling rows) into one
// pinned staging buffer and uploads it with one asynchronous copy; ops read it from there, so nothing
// inside the step waits for the host. A decode step is captured as a CUDA graph (one executable graph
// per batch size, updated in place by cudaGraphExecUpdate when only parameters changed) and launched
// once; the step ends with one download (the tokens, or the logits) and one stream synchronisation.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
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
            const size_t want = std::max(n, cap * 2);
            if (ptr) DG_CUDA_CHECK(cudaFree(ptr));
            ptr = nullptr, cap = 0;
            DG_CUDA_CHECK(cudaMalloc(&ptr, want * sizeof(T)));
            cap = want;
            ++cuda::buffer_epoch();
        }
        return ptr;
    }
    ~Scratch() {
        if (ptr) cudaFree(ptr);
    }
};

// A decode step of at most this many sequences is captured as a graph; larger ones run eagerly.
constexpr int32_t kMaxGraphBatch = 64;

class CudaBackend final : public Backend {
    // What a decode step's graph depends on besides the contents of device memory (its kernels read the
    // tokens, positions, lengths, block tables and sampling rows from the step's metadata upload): the
    // launch shapes (tokens, logit rows, whether and how it samples), where each metadata section lies,
    // and the buffer epoch (every address a kernel takes). A step whose signature equals the one its
    // executable graph was last captured with launches that graph as it stands: no capture, no update.
    struct GraphSig {
        int32_t n_tokens = -1, n_logit_rows = 0, n_sample_rows = 0;
        bool sampled = false, adj = false, sort = false;
        size_t sections[5] = {};  // offsets of tokens, logit rows, block tables, descriptors, sampling rows
        uint64_t epoch = 0;
        bool operator==(const GraphSig&) const = default;
    };
    struct GraphEntry {
        cudaGraphExec_t exec = nullptr;
        GraphSig sig;  // of the capture it holds
    };
    // The open step (begin_step .. to_host / sample): its metadata, host and device copies.
    struct Step {
        bool open = false, capturing = false, sampled = false;
        bool replaying = false;  // a decode step launching its graph as it stands: the ops enqueue nothing
        GraphSig sig;
        const StepBatch* batch = nullptr;
        const int32_t* tokens_host = nullptr;
        int32_t n_tokens = 0;
        std::vector<int32_t> logit_rows;
        std::vector<DevSeq> seqs;  // decode first; `blocks` -> the staged block tables (GDN ignores them)
        std::span<const SampleRow> sample_rows;
        cuda::SamplePlan plan;
        const int32_t* d_tokens = nullptr;
        const int32_t* d_rows = nullptr;
        const DevSeq* d_seqs = nullptr;
        const uint8_t* d_sample = nullptr;
    };
public:
    // exact: every matmul on the fp32 oracle kernel (`cuda-exact`, the twin of `cpu-exact`); otherwise the
    // serving path: GEMV with quantised activations at decode, tensor-core GEMM at prefill (matmul.cuh).
    explicit CudaBackend(bool exact) : exact_(exact), mm_(exact ? MatmulPath::kExact : MatmulPath::kAuto) {
        // "0": decode steps run eagerly; "recapture": captured every step and the graph updated (no replay
        // as it stands); anything else: replayed when the signature allows. The tests compare the three.
        const char* g = std::getenv("DG_CUDA_GRAPHS");
        graphs_ = !(g && std::strcmp(g, "0") == 0);
        replay_ = !(g && std::strcmp(g, "recapture") == 0);
        if (cudaStreamCreate(&stream_) != cudaSuccess) {
            cudaGetLastError();
            stream_ = nullptr;
            error_ = absl::InternalError("cuda: cannot create the backend's stream");
        }
    }
    ~CudaBackend() override {
        abandon_step();
        for (auto& [k, e] : execs_) cudaGraphExecDestroy(e.exec);
        if (stream_) cudaStreamDestroy(stream_);
        for (auto& [h, d] : dev_data_) cudaFree(d);
        for (auto& [h, d] : dev_vec_) cudaFree(d);
        for (auto& [h, t] : experts_) cudaFree(t.table);
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
        ++cuda::buffer_epoch();
        if (cudaMalloc(&p, size_t(n) * sizeof(float)) != cudaSuccess) {
            cudaGetLastError();
            return absl::ResourceExhaustedError(absl::StrCat("cuda: cannot allocate ", n * 4, " bytes of device memory"));
        }
        return p;
    }
    void free(float* p) override {
        ++cuda::buffer_epoch();
        guard([&] { DG_CUDA_CHECK(cudaFree(p)); });
    }
    // Inside a step, the download of its logits ends it: the graph is launched, then one asynchronous
    // copy and one stream synchronisation.
    void to_host(const float* src, float* dst, int64_t n) override {
        guard([&] {
            if (!step_.open) {
                DG_CUDA_CHECK(cudaMemcpy(dst, src, size_t(n) * 4, cudaMemcpyDeviceToHost));
                return;
            }
            finish_graph();
            DG_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * 4, cudaMemcpyDeviceToHost, stream_));
            DG_CUDA_CHECK(cudaStreamSynchronize(stream_));
            step_.open = false;
        });
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
        ++cuda::buffer_epoch();  // new weights: no graph replays as it stands
        config_ = w.config;
        mm_shapes_.clear();
        auto mat = [&](const Matrix& m) { return upload(m.data, uint64_t(m.rows) * m.row_bytes); };
        auto mm_mat = [&](const Matrix& m) {  // a matrix mm_ multiplies: its shape is reserved per step
            bool seen = false;
            for (const Matrix& s : mm_shapes_)
                seen = seen || (s.type == m.type && s.rows == m.rows && s.cols == m.cols && s.row_bytes == m.row_bytes);
            if (!m.empty() && !seen) mm_shapes_.push_back(m);
            return mat(m);
        };
        auto vec = [&](const std::vector<float>& v) { return upload_vec(v); };
        // Routed experts go through moe_expert_matmul (not mm_): no reservation for them.
        auto mlp = [&](const MlpWeights& m, bool through_mm) -> absl::Status {
            for (const Matrix* x : {&m.gate, &m.up, &m.down})
                if (!x->empty()) DG_RETURN_IF_ERROR(through_mm ? mm_mat(*x) : mat(*x));
            return absl::OkStatus();
        };
        DG_RETURN_IF_ERROR(mat(w.embed));
        DG_RETURN_IF_ERROR(mm_mat(w.lm_head));
        DG_RETURN_IF_ERROR(vec(w.final_norm));
        for (const LayerWeights& l : w.layers) {
            DG_RETURN_IF_ERROR(vec(l.attn_norm));
            DG_RETURN_IF_ERROR(vec(l.post_norm));
            if (l.is_attention) {
                for (const Matrix* x : {&l.attn.q, &l.attn.k, &l.attn.v, &l.attn.o}) DG_RETURN_IF_ERROR(mm_mat(*x));
                DG_RETURN_IF_ERROR(vec(l.attn.q_norm));
                DG_RETURN_IF_ERROR(vec(l.attn.k_norm));
            } else {
                const GdnWeights& g = l.gdn;
                for (const Matrix* x : {&g.qkv, &g.z, &g.beta, &g.alpha, &g.out}) DG_RETURN_IF_ERROR(mm_mat(*x));
                for (const auto* v : {&g.conv_w, &g.dt_bias, &g.ssm_a, &g.norm_w}) DG_RETURN_IF_ERROR(vec(*v));
            }
            DG_RETURN_IF_ERROR(mlp(l.mlp, true));
            if (!l.moe.router.empty()) {
                DG_RETURN_IF_ERROR(mat(l.moe.router));
                DG_RETURN_IF_ERROR(mm_mat(l.moe.shared_gate));
                DG_RETURN_IF_ERROR(mlp(l.moe.shared, true));
                for (const MlpWeights& e : l.moe.experts) DG_RETURN_IF_ERROR(mlp(e, false));
                DG_RETURN_IF_ERROR(expert_tables(l.moe));
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
        config_ = c;
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
        op([&] {
            const int32_t* d = step_.open && tokens == step_.tokens_host && n == step_.n_tokens ? step_.d_tokens : nullptr;
            if (!d) {
                int32_t* t = tok_.need(n);
                DG_CUDA_CHECK(cudaMemcpy(t, tokens, size_t(n) * 4, cudaMemcpyHostToDevice));
                d = t;
            }
            cuda::embed(d, n, dev(table), x, stream_);
        });
    }
    // x is only read when r is null (cuda::add_rmsnorm's x is not const for its add).
    void rmsnorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* y) override {
        op([&] { norm(const_cast<float*>(x), nullptr, w, rows, dim, eps, y); });
    }
    void add_rmsnorm(float* x, const float* r, const float* w, int64_t rows, int64_t dim, float eps, float* y) override {
        op([&] { norm(x, r, w, rows, dim, eps, y); });
    }
    // One launch: the add, the norm and, where the serving GEMV may read y next (a decode step's hidden
    // state), y's q8 blocks (MadeBlocks).
    void norm(float* x, const float* r, const float* w, int64_t rows, int64_t dim, float eps, float* y) {
        cuda::add_rmsnorm(x, r, dvec(w), rows, dim, eps, y, make_blocks_of(y, rows * dim, dim % 32 == 0), stream_);
    }
    void matmul(const float* x, int32_t n, const Matrix& W, float* y) override {
        op([&] {
            const Matrix d = dev(W);
            mm_.of_one_input(x, n, std::span<const Matrix>(&d, 1), std::span<float* const>(&y, 1), stream_,
                             blocks_of(x, n, W.cols));
        });
    }
    void matmuls_of_one_input(const float* x, int32_t n, std::span<const Matrix* const> Ws,
                              std::span<float* const> ys) override {
        op([&] {
            // On the stack: ~190 calls per 27B decode step.
            Matrix d[cuda::Matmul::kOfOneInputMax];
            if (Ws.size() > cuda::Matmul::kOfOneInputMax)
                throw DeviceError("matmuls_of_one_input: too many matrices", cudaErrorInvalidValue);
            for (size_t i = 0; i < Ws.size(); ++i) d[i] = dev(*Ws[i]);
            mm_.of_one_input(x, n, std::span<const Matrix>(d, Ws.size()), ys, stream_,
                             Ws.empty() ? nullptr : blocks_of(x, n, Ws[0]->cols));
        });
    }
    void add(float* y, const float* x, int64_t n) override {
        op([&] { cuda::add(y, x, n, stream_); });
    }
    void swiglu(const float* g, const float* u, int64_t count, float* out) override {
        op([&] { cuda::swiglu(g, u, count, out, stream_, make_blocks_of(out, count, true)); });
    }
    void copy_rows(const float* x, const int32_t* rows, int32_t n_rows, int64_t dim, float* y) override {
        op([&] { copy_rows_impl(x, rows, n_rows, dim, y); });
    }
    void copy_rows_impl(const float* x, const int32_t* rows, int32_t n_rows, int64_t dim, float* y) {
        const bool staged = step_.open && size_t(n_rows) == step_.logit_rows.size() &&
                            std::equal(rows, rows + n_rows, step_.logit_rows.begin());
        const int32_t* d = staged ? step_.d_rows : nullptr;
        if (!d) {
            int32_t* r = rows_.need(std::max(n_rows, 1));
            DG_CUDA_CHECK(cudaMemcpy(r, rows, size_t(n_rows) * 4, cudaMemcpyHostToDevice));
            d = r;
        }
        cuda::copy_rows(x, d, n_rows, dim, y, stream_);
    }

    // Decode slices (len 1) run the fused decode kernel, longer ones the chunked prefill kernel
    // (engine/cuda/gdn*.cu); their descriptors go to the device decode-first. The token-by-token kernels
    // (gdn_mixer_reference) are the tests' reference, used here only for dk > 128, which no Qwen3.5 has.
    void gdn_mixer(const StepBatch& b, int32_t layer, const GdnDims& d, const GdnWeights& w, float eps, float* qkv,
                   const float* z, const float* bp, const float* ap, float* o) override {
        op([&] { gdn_mixer_impl(b, layer, d, w, eps, qkv, z, bp, ap, o); });
    }
    void gdn_mixer_impl(const StepBatch& b, int32_t layer, const GdnDims& d, const GdnWeights& w, float eps, float* qkv,
                        const float* z, const float* bp, const float* ap, float* o) {
        const bool staged = step_.open && &b == step_.batch;
        std::vector<DevSeq> local;
        if (!staged) local = seq_descriptors(b);
        const std::vector<DevSeq>& ds = staged ? step_.seqs : local;
        if (ds.empty()) return;
        const int32_t n_dec = int32_t(std::count_if(ds.begin(), ds.end(), [](const DevSeq& s) { return s.len == 1; }));
        const DevSeq* seqs_dev = staged ? step_.d_seqs : nullptr;
        if (!seqs_dev) {
            DG_CUDA_CHECK(cudaMemcpy(gdn_seqs_.need(ds.size()), ds.data(), ds.size() * sizeof(DevSeq), cudaMemcpyHostToDevice));
            seqs_dev = gdn_seqs_.ptr;
        }
        GdnLayerState st{states_ + int64_t(layer) * (conv_floats_ + s_floats_), state_floats(), conv_floats_};
        GdnLayerArgs args{d, dvec(w.conv_w.data()), dvec(w.dt_bias.data()), dvec(w.ssm_a.data()),
                          dvec(w.norm_w.data()), eps, qkv, z, bp, ap, o, st};
        // A decode-only step's output gets its q8 blocks from the decode kernel (the out projection reads them).
        const bool decode_only = n_dec == int32_t(ds.size());
        if (const cuda::ActQ8* q8 = make_blocks_of(o, int64_t(b.n_tokens()) * d.Hv * d.dv,
                                                   gdn_fast_supported(d) && decode_only && d.dv % 32 == 0))
            args.o_q8 = *q8;
        if (!gdn_fast_supported(d)) {
            static bool warned = false;
            if (!warned) std::fprintf(stderr, "deltagate cuda: GDN dk %lld > %lld: running the token-by-token reference kernels\n",
                                      (long long)d.dk, (long long)kGdnMaxDk);
            warned = true;
            float* scratch = gdn_scratch_.need(size_t(2) * b.n_tokens() * d.Hv);
            cuda::gdn_mixer_reference(args, seqs_dev, int32_t(ds.size()), b.n_tokens(), scratch, stream_);
            return;
        }
        const GdnWorkspace ws{gdn_scratch_.need(size_t(gdn_workspace_floats(n_dec, d))),
                              gdn_arrivals(size_t(gdn_arrival_words(n_dec, d)))};
        cuda::gdn_mixer(args, seqs_dev, ds.data(), n_dec, int32_t(ds.size()) - n_dec, ws, GdnTiling{}, stream_);
    }
    // The fast path's arrival counters must start zeroed; the kernels leave them zero, so only new memory
    // is zeroed (asynchronously, in stream order).
    uint32_t* gdn_arrivals(size_t words) {
        const size_t cap = gdn_arrivals_.cap;
        uint32_t* arrivals = gdn_arrivals_.need(words);
        if (gdn_arrivals_.cap != cap)
            DG_CUDA_CHECK(cudaMemsetAsync(arrivals, 0, gdn_arrivals_.cap * sizeof(uint32_t), stream_));
        return arrivals;
    }
    // Sequence descriptors as the GDN and attention kernels take them: decode (len 1) first, then prefill
    // slices. With `ids`, their block tables are appended there in the same order (`offs`: where each
    // starts); place_blocks then points each `blocks` at its device copy.
    static std::vector<DevSeq> seq_descriptors(const StepBatch& b, std::vector<int32_t>* ids = nullptr,
                                               std::vector<size_t>* offs = nullptr) {
        std::vector<DevSeq> ds;
        for (int decode = 1; decode >= 0; --decode)
            for (const SeqSlice& s : b.seqs)
                if (s.len > 0 && (s.len == 1) == bool(decode)) {
                    ds.push_back(DevSeq{s.begin, s.len, s.pos0, s.state_slot, nullptr});
                    if (ids) {
                        offs->push_back(ids->size());
                        if (s.n_blocks > 0) ids->insert(ids->end(), s.blocks, s.blocks + s.n_blocks);
                    }
                }
        return ds;
    }
    static void place_blocks(std::vector<DevSeq>& ds, const std::vector<size_t>& offs, const int32_t* dblocks) {
        for (size_t i = 0; i < ds.size(); ++i) ds[i].blocks = dblocks + offs[i];
    }

    void attention(const StepBatch& b, int32_t layer, const AttnDims& d, const AttnWeights& w, float eps,
                   const float* qg, const float* k, const float* v, float* out) override {
        op([&] { attention_impl(b, layer, d, w, eps, qg, k, v, out); });
    }
    // The attention kernels (engine/cuda/attention.cu) over the sequence descriptors (decode first, then
    // prefill) and their block tables: inside a step the staged ones (no copy, capturable: positions and
    // lengths are read on the device, the decode launch shape depends only on the decode count), outside a step
    // (the op tests) one upload of their own.
    void attention_impl(const StepBatch& b, int32_t layer, const AttnDims& d, const AttnWeights& w, float eps,
                        const float* qg, const float* k, const float* v, float* out) {
        const bool staged = step_.open && &b == step_.batch;
        std::vector<DevSeq> local;
        if (!staged) local = upload_seqs(b);
        const std::vector<DevSeq>& ds = staged ? step_.seqs : local;
        if (ds.empty()) return;
        const DevSeq* seqs_dev = staged ? step_.d_seqs : reinterpret_cast<const DevSeq*>(attn_meta_.ptr);
        const int32_t n_dec = decode_count(ds);
        float* workspace = attn_workspace(n_dec, d);
        KvLayerDev kv{layout_.kv_type, layout_.block_tokens, kv_row_bytes_, kv_[layer].k.bytes(), kv_[layer].v.bytes()};
        cuda::attention(seqs_dev, ds.data(), n_dec, int32_t(ds.size()) - n_dec, d, dvec(w.q_norm.data()),
                        dvec(w.k_norm.data()), eps, qg, k, v, out, kv, workspace, stream_);
    }
    // The split-K partials of n_dec decode sequences (independent of the context length; begin_step
    // reserves them before a capture).
    float* attn_workspace(int32_t n_dec, const AttnDims& d) {
        const int64_t ws = int64_t(n_dec) * d.Hq * cuda::attention_decode_splits(n_dec, d) * (d.hd + 2);
        return attn_ws_.need(size_t(std::max<int64_t>(ws, 1)));
    }
    static int32_t decode_count(const std::vector<DevSeq>& ds) {
        return int32_t(std::count_if(ds.begin(), ds.end(), [](const DevSeq& s) { return s.len == 1; }));
    }
    // Outside a step: the sequence descriptors and their block tables in one buffer (attn_meta_), one
    // synchronous upload; returns the host copy (`blocks` pointing at the device block tables).
    std::vector<DevSeq> upload_seqs(const StepBatch& b) {
        std::vector<int32_t> ids;
        std::vector<size_t> offs;
        std::vector<DevSeq> ds = seq_descriptors(b, &ids, &offs);
        if (ds.empty()) return ds;
        const size_t head = ds.size() * sizeof(DevSeq), bytes = head + ids.size() * sizeof(int32_t);
        uint8_t* dbuf = attn_meta_.need(bytes);
        place_blocks(ds, offs, reinterpret_cast<const int32_t*>(dbuf + head));
        std::vector<uint8_t> host(bytes);
        std::memcpy(host.data(), ds.data(), head);
        if (!ids.empty()) std::memcpy(host.data() + head, ids.data(), ids.size() * sizeof(int32_t));
        DG_CUDA_CHECK(cudaMemcpy(dbuf, host.data(), bytes, cudaMemcpyHostToDevice));
        return ds;
    }

    // Routing, grouping and the routed experts on the device (engine/cuda/moe.cu): no host round trip.
    // The shared expert and its sigmoid gate write y; each token's experts are then added in ascending
    // expert order by a gather (no atomics), as the CPU backend adds them.
    void moe_ffn(const float* x, int32_t n, const MoeWeights& w, int64_t top_k, float* y) override {
        op([&] { moe_ffn_impl(x, n, w, top_k, y); });
    }
    void moe_ffn_impl(const float* x, int32_t n, const MoeWeights& w, int64_t top_k, float* y) {
        const int64_t E = w.router.rows, H = w.router.cols;
        const int32_t k = int32_t(top_k);
        auto it = experts_.find(&w);
        DG_CHECK(it != experts_.end(), "MoE layer not prepared by prepare_weights");
        const ExpertTables& t = it->second;
        const MoeScratch m = moe_scratch(n, E, k, w.shared.gate.rows, t.gate.rows, H);
        // The router always runs exactly (as on the CPU): which experts a token visits does not depend on
        // the matmul path.
        cuda::matmul_exact(x, n, dev(w.router), m.logits, stream_);
        cuda::moe_route(m.logits, n, E, k, m.r, stream_);
        // x's q8 blocks, once for the shared expert and the routed gate and up: the norm's, or made here.
        const int64_t I = t.gate.rows;
        auto quantised = [](const cuda::ExpertMatrices& W) { return cuda::gemv_quant_type(W.type); };
        const bool routed_gemv = !exact_ && t.gemv;
        const cuda::ActQ8* xq = blocks_of(x, n, H);
        if (!xq && routed_gemv && (quantised(t.gate) || quantised(t.up))) {
            cuda::quantize_act_q8(x, n, H, m.xq, stream_);
            xq = &m.xq;
        }
        const int64_t Is = w.shared.gate.rows;
        const Matrix shared_in[] = {dev(w.shared.gate), dev(w.shared.up), dev(w.shared_gate)};
        float* shared_out[] = {m.a, m.b, m.gate};
        mm_.of_one_input(x, n, shared_in, shared_out, stream_, xq);
        // The SwiGLU output's q8 blocks made by the SwiGLU launch when the down projection's GEMV reads them.
        const Matrix shared_down = dev(w.shared.down);
        const cuda::ActQ8* hq = !exact_ && n < cuda::kGemmMinTokens && Is % 32 == 0 &&
                                        cuda::gemv_quant_type(shared_down.type)
                                    ? &m.hq
                                    : nullptr;
        cuda::swiglu(m.a, m.b, int64_t(n) * Is, m.a, stream_, hq);
        mm_.of_one_input(m.a, n, std::span<const Matrix>(&shared_down, 1), std::span<float* const>(&y, 1), stream_, hq);
        cuda::scale_rows_sigmoid(y, m.gate, n, H, stream_);
        // The routed experts: one grouped launch per matrix over every expert. Serving: the GEMV's kernels
        // (x's blocks for gate and up, the SwiGLU output's made by the SwiGLU launch for down: the blocks the
        // CPU fast path's matmul_fast makes of each expert's input); `cuda-exact`: the exact kernel's numerics.
        if (routed_gemv) {
            const cuda::ActQ8 x_blocks = xq ? *xq : cuda::ActQ8{};  // unused by float experts
            cuda::moe_expert_gemv(x_blocks, x, true, k, t.gate, m.r, m.a, stream_);
            cuda::moe_expert_gemv(x_blocks, x, true, k, t.up, m.r, m.b, stream_);
            cuda::swiglu(m.a, m.b, int64_t(n) * k * I, m.a, stream_, quantised(t.down) ? &m.hq : nullptr);
            cuda::moe_expert_gemv(m.hq, m.a, false, k, t.down, m.r, m.out, stream_);
        } else {
            cuda::moe_expert_matmul(x, true, k, t.gate, m.r, m.a, stream_);
            cuda::moe_expert_matmul(x, true, k, t.up, m.r, m.b, stream_);
            cuda::swiglu(m.a, m.b, int64_t(n) * k * I, m.a, stream_);
            cuda::moe_expert_matmul(m.a, false, k, t.down, m.r, m.out, stream_);
        }
        cuda::gather_add_rows(m.out, m.r.src, m.r.weights, n, k, H, y, stream_);
    }
    // The MoE layer's buffers for n tokens (begin_step sizes them before a capture, where no allocation
    // may happen; a layer then finds them large enough).
    struct MoeScratch {
        float *logits, *a, *b, *gate, *out;
        cuda::MoeRouting r;
        cuda::ActQ8 xq;  // q8 blocks of x (serving), n x H, when the norm's are not there
        cuda::ActQ8 hq;  // q8 blocks of the SwiGLU outputs (serving): shared n x Is, routed n*k x I
    };
    MoeScratch moe_scratch(int32_t n, int64_t E, int32_t k, int64_t Is, int64_t I, int64_t H) {
        const size_t nk = size_t(std::max(n, 1)) * k, ffn = std::max<size_t>(size_t(std::max(n, 1)) * Is, nk * I);
        MoeScratch m{};
        m.logits = moe_logits_.need(size_t(std::max(n, 1)) * E);
        m.a = moe_a_.need(std::max<size_t>(ffn, 1));
        m.b = moe_b_.need(std::max<size_t>(ffn, 1));
        m.gate = moe_gate_.need(std::max(n, 1));
        m.out = moe_y_.need(nk * H);
        m.r.weights = moe_w_.need(nk);
        int32_t* idx = moe_idx_.need(3 * nk + 2 * size_t(E));
        m.r.sel = idx, m.r.src = idx + nk, m.r.list = idx + 2 * nk, m.r.counts = idx + 3 * nk, m.r.offsets = idx + 3 * nk + E;
        if (!exact_) {
            const size_t qx = std::max<size_t>(size_t(std::max(n, 1)) * H, 32), qh = std::max<size_t>(ffn, 32);
            m.xq = cuda::ActQ8{moe_xq_.need(qx), moe_xd_.need(qx / 32), moe_xs_.need(qx / 32)};
            m.hq = cuda::ActQ8{moe_hq_.need(qh), moe_hd_.need(qh / 32), moe_hs_.need(qh / 32)};
        }
        return m;
    }

    // Sampling where the logits are (engine/cuda/sampling.cu): the rows' descriptors and penalty entries
    // came up with the step's metadata (begin_step); one launch, one asynchronous download of the tokens
    // (and requested logprobs) into pinned memory, one synchronisation: a few hundred bytes per row
    // instead of the vocab-sized rows. Called outside a step (or with other rows), the rows go up on
    // their own asynchronous copy.
    absl::Status sample(const float* logits, int32_t n_logit_rows, int64_t vocab, std::span<const SampleRow> rows,
                        std::vector<SampledToken>* out) override {
        if (absl::Status v = validate_sample_rows(rows, n_logit_rows, vocab); !v.ok()) {
            abandon_step();
            return v;
        }
        out->assign(rows.size(), SampledToken{});
        if (rows.empty()) {
            guard([&] { end_step(); });
            return take_error();
        }
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
        const bool staged = step_.open && step_.sampled && rows.data() == step_.sample_rows.data() &&
                            rows.size() == step_.sample_rows.size();
        cuda::SamplePlan own;
        const uint8_t* in = step_.d_sample;
        if (!staged) {
            finish_graph();  // the logits must be computed first: the step's graph goes before this upload
            own = cuda::plan_sample(rows, vocab);
            const size_t rows_bytes = own.rows.size() * sizeof(cuda::SampleRowDev);
            const size_t bytes = rows_bytes + own.pens.size() * sizeof(cuda::SamplePenaltyDev);
            uint8_t* staging = sample_staging_.need(bytes);
            std::memcpy(staging, own.rows.data(), rows_bytes);
            if (!own.pens.empty()) std::memcpy(staging + rows_bytes, own.pens.data(), bytes - rows_bytes);
            uint8_t* d = sample_in_.need(bytes);
            DG_CUDA_CHECK(cudaMemcpyAsync(d, staging, bytes, cudaMemcpyHostToDevice, stream_));
            in = d;
        }
        const cuda::SamplePlan& plan = staged ? step_.plan : own;
        const size_t n = plan.rows.size(), rows_bytes = n * sizeof(cuda::SampleRowDev);
        if (staged && step_.replaying) {  // the sampler and the download are in the graph
            finish_graph();
            DG_CUDA_CHECK(cudaStreamSynchronize(stream_));
            step_.open = false;
            std::memcpy(host_out, sample_out_host_.ptr, n * sizeof(cuda::SampleOutDev));
            return;
        }
        const SampleBuffers sb = sample_buffers(plan, vocab);
        cuda::sample_rows(logits, vocab, reinterpret_cast<const cuda::SampleRowDev*>(in), int32_t(n),
                          reinterpret_cast<const cuda::SamplePenaltyDev*>(in + rows_bytes), sb.ws, sb.out, stream_);
        // Into pinned memory, so the copy can be part of the step's graph.
        auto* pinned = reinterpret_cast<cuda::SampleOutDev*>(sample_out_host_.need(n * sizeof(cuda::SampleOutDev)));
        DG_CUDA_CHECK(cudaMemcpyAsync(pinned, sb.out, n * sizeof(cuda::SampleOutDev), cudaMemcpyDeviceToHost, stream_));
        finish_graph();
        DG_CUDA_CHECK(cudaStreamSynchronize(stream_));
        step_.open = false;
        std::memcpy(host_out, pinned, n * sizeof(cuda::SampleOutDev));
    }
    struct SampleBuffers {
        cuda::SampleWorkspace ws;
        cuda::SampleOutDev* out;
    };
    SampleBuffers sample_buffers(const cuda::SamplePlan& plan, int64_t vocab) {
        SampleBuffers b{};
        if (plan.n_adj) b.ws.adj = sample_adj_.need(size_t(plan.n_adj) * vocab);
        if (plan.n_sort) {
            b.ws.keys = sample_keys_.need(size_t(plan.n_sort) * cuda::sample_key_stride(vocab));
            b.ws.weight = sample_weight_.need(size_t(plan.n_sort) * vocab);
        }
        b.out = sample_out_.need(std::max<size_t>(plan.rows.size(), 1));
        return b;
    }

    // ---- the step ---------------------------------------------------------------------------------------

    void begin_step(const StepBatch& b, std::span<const int32_t> logit_rows, std::span<const SampleRow> sample_rows) override {
        abandon_step();  // a step left open by an error path
        guard([&] { begin_step_impl(b, logit_rows, sample_rows); });
    }
    void begin_step_impl(const StepBatch& b, std::span<const int32_t> logit_rows, std::span<const SampleRow> sample_rows) {
        Step st;
        st.batch = &b;
        st.tokens_host = b.tokens.data();
        st.n_tokens = b.n_tokens();
        st.logit_rows.assign(logit_rows.begin(), logit_rows.end());
        std::vector<int32_t> ids;  // the block tables, in the descriptors' order
        std::vector<size_t> offs;
        st.seqs = seq_descriptors(b, &ids, &offs);
        // Rows that do not validate are staged nowhere: sample() reports them.
        st.sampled = !sample_rows.empty() &&
                     validate_sample_rows(sample_rows, int32_t(logit_rows.size()), config_.vocab_size).ok();
        if (st.sampled) {
            st.sample_rows = sample_rows;
            st.plan = cuda::plan_sample(sample_rows, config_.vocab_size);
        }
        // The one upload's sections, 16-byte aligned.
        size_t total = 0;
        auto section = [&](size_t bytes) {
            const size_t off = total;
            total += (bytes + 15) / 16 * 16;
            return off;
        };
        const size_t tok_off = section(size_t(st.n_tokens) * 4), rows_off = section(st.logit_rows.size() * 4);
        const size_t blk_off = section(ids.size() * 4), seqs_off = section(st.seqs.size() * sizeof(DevSeq));
        // (Each offset is the end of the sections before it, so they are in the signature through the next.)
        const size_t sample_rows_bytes = st.plan.rows.size() * sizeof(cuda::SampleRowDev);
        const size_t sample_off = section(sample_rows_bytes + st.plan.pens.size() * sizeof(cuda::SamplePenaltyDev));
        total = std::max<size_t>(total, 16);
        uint8_t* h = staging_.need(total);  // free: the previous step ended with a synchronisation
        uint8_t* d = meta_dev_.need(total);
        auto put = [&](size_t off, const void* src, size_t bytes) {
            if (bytes) std::memcpy(h + off, src, bytes);
        };
        put(tok_off, b.tokens.data(), size_t(st.n_tokens) * 4);
        put(rows_off, st.logit_rows.data(), st.logit_rows.size() * 4);
        put(blk_off, ids.data(), ids.size() * 4);
        place_blocks(st.seqs, offs, reinterpret_cast<const int32_t*>(d + blk_off));  // device addresses
        put(seqs_off, st.seqs.data(), st.seqs.size() * sizeof(DevSeq));
        put(sample_off, st.plan.rows.data(), sample_rows_bytes);
        put(sample_off + sample_rows_bytes, st.plan.pens.data(), st.plan.pens.size() * sizeof(cuda::SamplePenaltyDev));
        st.d_tokens = reinterpret_cast<const int32_t*>(d + tok_off);
        st.d_rows = reinterpret_cast<const int32_t*>(d + rows_off);
        st.d_seqs = reinterpret_cast<const DevSeq*>(d + seqs_off);
        st.d_sample = d + sample_off;
        reserve_step(st);
        DG_CUDA_CHECK(cudaMemcpyAsync(d, h, total, cudaMemcpyHostToDevice, stream_));
        st.sig = GraphSig{st.n_tokens,      int32_t(st.logit_rows.size()),
                          int32_t(st.plan.rows.size()), st.sampled,
                          st.plan.n_adj > 0,            st.plan.n_sort > 0,
                          {tok_off, rows_off, blk_off, seqs_off, sample_off},
                          cuda::buffer_epoch().load()};
        step_ = std::move(st);
        step_.open = true;
        const bool decode = std::all_of(b.seqs.begin(), b.seqs.end(), [](const SeqSlice& s) { return s.len == 1; });
        if (graphs_ && stream_ && decode && step_.n_tokens <= kMaxGraphBatch) {
            auto it = execs_.find({step_.n_tokens, step_.sampled});
            if (replay_ && it != execs_.end() && it->second.sig == step_.sig) {
                step_.replaying = true;  // launched where the capture would end (finish_graph)
                return;
            }
            // Thread-local mode: any synchronous call this thread makes inside the step (a copy, a memset,
            // an allocation) fails it with cudaErrorStreamCaptureImplicit instead of silently waiting for
            // the host; other threads of the process are not restricted.
            DG_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
            step_.capturing = true;
        }
    }
    // Every buffer the step's ops take, at its size for this step, so nothing is allocated (or
    // zeroed synchronously) inside a capture.
    void reserve_step(const Step& st) {
        const int32_t n = st.n_tokens;
        const ModelConfig& c = config_;
        if (n_gdn_ > 0) {
            const GdnDims d = gdn_dims();
            const int32_t n_dec = decode_count(st.seqs);
            if (gdn_fast_supported(d)) {
                gdn_scratch_.need(size_t(gdn_workspace_floats(n_dec, d)));
                gdn_arrivals(size_t(gdn_arrival_words(n_dec, d)));
            } else {
                gdn_scratch_.need(size_t(2) * n * d.Hv);
            }
        }
        if (!kv_.empty())
            attn_workspace(decode_count(st.seqs), AttnDims{c.n_heads, c.n_kv_heads, c.head_dim, c.rotary_dim, c.rope_theta});
        // The matmul workspaces (and cuBLAS handle) for the step's token count and its logit rows (the
        // LM head multiplies only those).
        for (const Matrix& W : mm_shapes_) {
            mm_.reserve(n, W);
            mm_.reserve(int32_t(st.logit_rows.size()), W);
        }
        for (const auto& [w, t] : experts_) {
            moe_scratch(n, w->router.rows, int32_t(c.n_experts_used), w->shared.gate.rows, t.gate.rows, w->router.cols);
            break;  // every MoE layer has the same shapes
        }
        if (!exact_ && n < cuda::kGemmMinTokens)  // the widest output a producer makes blocks of
            made_blocks_reserve(size_t(n) * std::max({c.hidden, c.intermediate, c.lin_v_heads * c.lin_v_dim}));
        if (st.sampled) {
            sample_buffers(st.plan, c.vocab_size);
            sample_out_host_.need(st.plan.rows.size() * sizeof(cuda::SampleOutDev));
        }
    }
    GdnDims gdn_dims() const {
        const ModelConfig& c = config_;
        return GdnDims{c.lin_k_heads, c.lin_v_heads, c.lin_k_dim, c.lin_v_dim, c.conv_kernel, c.conv_dim()};
    }
    // Ends a capture and launches it: the batch size's executable graph takes the new graph's parameters
    // when its nodes match (cudaGraphExecUpdate), else it is instantiated again.
    void finish_graph() {
        const std::pair<int32_t, bool> key{step_.n_tokens, step_.sampled};
        if (step_.replaying) {
            step_.replaying = false;
            DG_CUDA_CHECK(cudaGraphLaunch(execs_.at(key).exec, stream_));
            return;
        }
        if (!step_.capturing) return;
        step_.capturing = false;
        cudaGraph_t g = nullptr;
        DG_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
        struct GraphGuard {
            cudaGraph_t g;
            ~GraphGuard() { cudaGraphDestroy(g); }
        } owned{g};
        GraphEntry& entry = execs_[key];
        entry.sig = GraphSig{};  // valid again once this capture is in the executable graph
        cudaGraphExec_t& exec = entry.exec;
        if (exec) {
            cudaGraphExecUpdateResultInfo info{};
            if (cudaGraphExecUpdate(exec, g, &info) != cudaSuccess) {
                cudaGetLastError();  // a changed topology: not an error, instantiate again
                cudaGraphExecDestroy(exec);
                exec = nullptr;
            }
        }
        if (!exec) {
            if (cudaError_t e = cudaGraphInstantiate(&exec, g, 0)) {
                exec = nullptr;
                execs_.erase(key);
                DG_CUDA_CHECK(e);
            }
        }
        entry.sig = step_.sig;
        DG_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
    }
    // Ends the step without a download (sample() with no rows).
    void end_step() {
        if (!step_.open) return;
        finish_graph();
        DG_CUDA_CHECK(cudaStreamSynchronize(stream_));
        step_.open = false;
    }
    // Drops an open step on an error path: its capture is ended and discarded, its stream drained (the
    // staging buffer is then free). Never throws.
    void abandon_step() {
        step_.replaying = false;  // nothing of it was enqueued
        if (step_.capturing) {
            cudaGraph_t g = nullptr;
            if (cudaStreamEndCapture(stream_, &g) == cudaSuccess && g) cudaGraphDestroy(g);
            cudaGetLastError();
            step_.capturing = false;
        }
        if (step_.open && stream_) {
            cudaStreamSynchronize(stream_);
            cudaGetLastError();
        }
        step_.open = false;
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
                ++cuda::buffer_epoch();
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
            ++cuda::buffer_epoch();
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

    // An op of the model's forward: enqueues nothing in a replayed step (its graph holds what the op
    // enqueued when it was captured).
    template <typename F>
    void op(F&& f) {
        if (!step_.replaying) guard(std::forward<F>(f));
    }
    // Runs one Backend call's device work. A DeviceError becomes the pending error (take_error); with an
    // error pending, calls do nothing, so a failed step never computes on half-made results. After an
    // error the device is probed: a sticky error (illegal address, lost context) marks it lost for good.
    template <typename F>
    void guard(F&& f) {
        ++ops_;  // MadeBlocks: an op between a producer and its reader voids the producer's blocks
        if (!error_.ok()) return;
        try {
            f();
        } catch (const DeviceError& e) {
            abandon_step();
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
    // The q8 blocks of the last producer's output (serving, decode-sized steps): the norm (add_rmsnorm)
    // and SwiGLU write them in their own launch, as quantize_act_q8 would make them. The op right after
    // the producer reads them instead of quantising its input again, if it reads exactly that output
    // (same pointer and element count, a width that is a multiple of 32): the projections of one hidden
    // state (matmuls_of_one_input), the MoE layer, the down projection, the LM head. Any op between them
    // voids the blocks (ops_ counts the guarded ops), so an output written after its producer is never
    // read through stale blocks.
    struct MadeBlocks {
        const float* y = nullptr;
        int64_t count = 0;  // floats of y they cover
        uint64_t op = 0;    // ops_ at the producer
        cuda::ActQ8 q8{};
    };
    const cuda::ActQ8* blocks_of(const float* x, int64_t n, int64_t cols) const {
        const MadeBlocks& b = made_;
        return b.y && b.y == x && n * cols == b.count && cols % 32 == 0 && b.op + 1 == ops_ ? &b.q8 : nullptr;
    }
    // The producer's side: y's blocks, for the producer's launch to write, when `eligible` (the
    // producer's own conditions) and inside a decode-sized serving step whose reserve_step sized the
    // buffer (nothing is allocated inside a capture); otherwise null. Either way the previous producer's
    // blocks are void.
    const cuda::ActQ8* make_blocks_of(const float* y, int64_t count, bool eligible) {
        made_ = MadeBlocks{};
        if (!eligible || exact_ || !step_.open || step_.n_tokens >= cuda::kGemmMinTokens || count <= 0 ||
            count % 32 != 0 || size_t(count) > made_q_.cap)
            return nullptr;
        made_ = MadeBlocks{y, count, ops_, cuda::ActQ8{made_q_.ptr, made_d_.ptr, made_s_.ptr}};
        return &made_.q8;
    }
    void made_blocks_reserve(size_t count) {
        made_q_.need(count);
        made_d_.need(count / 32 + 1);
        made_s_.need(count / 32 + 1);
    }
    MadeBlocks made_;
    uint64_t ops_ = 0;
    Scratch<int8_t> made_q_;
    Scratch<float> made_d_;
    Scratch<int32_t> made_s_;

    bool exact_;
    Matmul mm_;  // the matmul dispatcher and its workspaces (cuBLAS handle, activation blocks, bf16 tiles)
    std::vector<Matrix> mm_shapes_;  // one matrix of each shape mm_ multiplies (reserve_step sizes mm_ for them)
    // Device pointer tables of one MoE layer's experts (moe_expert_matmul reads them).
    struct ExpertTables {
        const uint8_t** table = nullptr;  // device: [gate E][up E][down E]
        cuda::ExpertMatrices gate, up, down;
        bool gemv = false;  // every expert 16-byte aligned, every shape one moe_expert_gemv takes
    };
    absl::Status expert_tables(const MoeWeights& m) {
        if (experts_.count(&m)) return absl::OkStatus();
        const int64_t E = int64_t(m.experts.size());
        if (E == 0) return absl::InvalidArgumentError("cuda: MoE layer without experts");
        std::vector<const uint8_t*> host(size_t(3 * E));
        ExpertTables t;
        const Matrix* first[3] = {&m.experts[0].gate, &m.experts[0].up, &m.experts[0].down};
        for (int which = 0; which < 3; ++which)
            for (int64_t e = 0; e < E; ++e) {
                const MlpWeights& x = m.experts[size_t(e)];
                const Matrix& mat = which == 0 ? x.gate : which == 1 ? x.up : x.down;
                const Matrix& f = *first[which];
                if (mat.type != f.type || mat.rows != f.rows || mat.cols != f.cols || mat.row_bytes != f.row_bytes)
                    return absl::InvalidArgumentError(absl::StrCat("cuda: MoE expert ", e,
                                                                   " differs in type or shape from expert 0"));
                host[size_t(which * E + e)] = dev(mat).data;
            }
        if (cudaMalloc(&t.table, host.size() * sizeof(void*)) != cudaSuccess) {
            cudaGetLastError();
            return absl::ResourceExhaustedError("cuda: weights do not fit: MoE expert tables");
        }
        DG_CUDA_CHECK(cudaMemcpy(t.table, host.data(), host.size() * sizeof(void*), cudaMemcpyHostToDevice));
        t.gemv = true;
        for (const uint8_t* p : host) t.gemv = t.gemv && reinterpret_cast<uintptr_t>(p) % 16 == 0;
        for (int which = 0; which < 3; ++which) {
            const Matrix& f = *first[which];
            cuda::ExpertMatrices& em = which == 0 ? t.gate : which == 1 ? t.up : t.down;
            em = cuda::ExpertMatrices{t.table + which * E, f.type, f.row_bytes, f.rows, f.cols, E};
            t.gemv = t.gemv && cuda::moe_expert_gemv_supports(em);
        }
        experts_[&m] = t;
        return absl::OkStatus();
    }

    ModelConfig config_;
    cudaStream_t stream_ = nullptr;  // every op of this backend; a blocking stream (ordered with sync calls)
    bool graphs_ = true;             // DG_CUDA_GRAPHS=0 turns decode-step graphs off
    Step step_;
    bool replay_ = true;             // DG_CUDA_GRAPHS=recapture turns replays without capture off
    std::map<std::pair<int32_t, bool>, GraphEntry> execs_;  // (batch size, sampled) -> executable graph
    std::unordered_map<const MoeWeights*, ExpertTables> experts_;
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
    Scratch<int32_t> tok_, rows_;
    Scratch<uint8_t> attn_meta_;  // attention's sequence descriptors + block tables outside a step
    Scratch<DevSeq> gdn_seqs_;
    Scratch<uint32_t> gdn_arrivals_;
    Scratch<int32_t> moe_idx_, moe_xs_, moe_hs_;
    Scratch<int8_t> moe_xq_, moe_hq_;
    Scratch<float> gdn_scratch_, attn_ws_, moe_logits_, moe_a_, moe_b_, moe_gate_, moe_y_, moe_w_, moe_xd_, moe_hd_;
    PinnedScratch staging_, sample_staging_, sample_out_host_;
    Scratch<uint8_t> meta_dev_;
    Scratch<uint8_t> sample_in_;
    Scratch<float> sample_adj_;
    Scratch<uint64_t> sample_keys_;
    Scratch<uint64_t> sample_weight_;
    Scratch<cuda::SampleOutDev> sample_out_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(bool exact) { return std::make_unique<CudaBackend>(exact); }

}  // namespace dg::cuda
