// The CPU backend: host memory, and every op from engine/cpu/ops.h. Two flavours, fixed at creation:
// "cpu-exact" (the oracle tests compare against) and "cpu" (serving: matmul_fast, the AVX-512 conv, delta
// rule and gated norm of gdn_fast.cpp, the AVX-512 attention rows).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/backend.h"
#include "engine/cpu/huge_page_weights.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/rows16.h"
#include "engine/status.h"

namespace dg {
namespace {

class CpuBackend final : public Backend {
public:
    explicit CpuBackend(bool exact) : exact_(exact) {}
    std::string name() const override { return exact_ ? "cpu-exact" : "cpu"; }
    std::string device_name() const override {
        return placement_.empty() ? "host CPU" : absl::StrCat("host CPU, ", placement_);
    }

    absl::StatusOr<float*> alloc_f32(int64_t n) override {
        float* p = new (std::nothrow) float[n];
        if (!p) return absl::ResourceExhaustedError(absl::StrCat("cpu: cannot allocate ", n * 4, " bytes"));
        return p;
    }
    void free(float* p) override { delete[] p; }
    void to_host(const float* src, float* dst, int64_t n) override { std::memcpy(dst, src, n * sizeof(float)); }
    void from_host(const float* src, float* dst, int64_t n) override { std::memcpy(dst, src, n * sizeof(float)); }
    // The serving flavour streams its weights from 2 MiB pages (huge_page_weights.h says why);
    // DG_CPU_HUGE_PAGES=0 leaves them where the loader put them (a file mapping several processes can
    // share). The oracle never moves them.
    absl::Status place_weights(ModelWeights& w) override {
        if (exact_) return absl::OkStatus();
        const char* e = std::getenv("DG_CPU_HUGE_PAGES");
        const std::string mode = e ? e : "1";
        if (mode == "0") return absl::OkStatus();
        if (mode != "1")
            return absl::InvalidArgumentError(absl::StrCat("DG_CPU_HUGE_PAGES='", mode, "': use 1 (the default) or 0"));
        // DG_CPU_PACK=0 keeps Q4_K, Q8_0 and BF16 matrices in their file layout (the per-row kernels; rows16.h):
        // for A/B runs.
        const char* pk = std::getenv("DG_CPU_PACK");
        const std::string pack = pk ? pk : "1";
        if (pack != "0" && pack != "1")
            return absl::InvalidArgumentError(absl::StrCat("DG_CPU_PACK='", pack, "': use 1 (the default) or 0"));
        DG_ASSIGN_OR_RETURN(const cpu::HugePagePlacement p, cpu::move_matrices_to_huge_pages(w, pack == "1"));
        placement_ = cpu::describe(p);
        return absl::OkStatus();
    }
    absl::Status prepare_weights(const ModelWeights& w) override {
        conv_taps_.clear();
        if (!exact_)
            for (const auto& l : w.layers)
                if (!l.is_attention)
                    conv_taps_.push_back(cpu::conv_taps_major(l.gdn.conv_w.data(), w.config.conv_dim(), w.config.conv_kernel));
        return absl::OkStatus();
    }

    absl::Status init_caches(const ModelConfig& c, const CacheLayout& layout) override {
        layout_ = layout;
        if (c.n_attention_layers() > 0) {
            if (layout.block_tokens <= 0 || layout.n_blocks <= 0)
                return absl::InvalidArgumentError("KV cache: block_tokens and n_blocks must be positive");
            auto rb = row_bytes(layout.kv_type, c.head_dim);
            if (!rb.ok())
                return absl::InvalidArgumentError(absl::StrCat("KV cache type ", dtype_info(layout.kv_type).name,
                                                               " cannot store head_dim ", c.head_dim, ": ",
                                                               rb.status().message()));
            kv_row_bytes_ = int64_t(*rb);
            n_kv_heads_ = c.n_kv_heads;
            const uint64_t bytes = uint64_t(layout.n_blocks) * layout.block_tokens * c.n_kv_heads * kv_row_bytes_;
            kv_.assign(c.n_attention_layers(), {});
            for (auto& l : kv_) {
                auto k = zeroed_huge_buffer(bytes, "KV cache");
                if (!k.ok()) return k.status();
                auto v = zeroed_huge_buffer(bytes, "KV cache");
                if (!v.ok()) return v.status();
                l.k = std::move(*k), l.v = std::move(*v);
            }
        }
        conv_floats_ = (c.conv_kernel - 1) * c.conv_dim();
        s_floats_ = c.lin_v_heads * c.lin_k_dim * c.lin_v_dim;
        n_gdn_ = c.n_gdn_layers();
        if (n_gdn_ > 0 && layout.n_state_slots <= 0)
            return absl::InvalidArgumentError("state pool: n_state_slots must be positive");
        auto states = zeroed_huge_buffer(uint64_t(std::max(0, layout.n_state_slots)) * state_floats() * sizeof(float), "state pool");
        if (!states.ok()) return states.status();
        states_ = std::move(*states);
        return absl::OkStatus();
    }
    const CacheLayout& cache_layout() const override { return layout_; }
    int64_t state_floats() const override { return n_gdn_ * (conv_floats_ + s_floats_); }
    float* slot(int32_t s) { return reinterpret_cast<float*>(states_.data()) + int64_t(s) * state_floats(); }
    void state_clear(int32_t s) override { std::fill_n(slot(s), state_floats(), 0.f); }
    void state_copy(int32_t dst, int32_t src) override {
        if (dst != src) std::memcpy(slot(dst), slot(src), state_floats() * sizeof(float));
    }
    void state_download(int32_t s, float* host) override { std::memcpy(host, slot(s), state_floats() * sizeof(float)); }
    void state_upload(int32_t s, const float* host) override { std::memcpy(slot(s), host, state_floats() * sizeof(float)); }
    void kv_copy_block(int32_t dst, int32_t src) override {
        if (dst == src) return;
        const int64_t block_bytes = layer_block_bytes();
        for (KvStore& l : kv_) {
            std::memcpy(l.k.data() + dst * block_bytes, l.k.data() + src * block_bytes, block_bytes);
            std::memcpy(l.v.data() + dst * block_bytes, l.v.data() + src * block_bytes, block_bytes);
        }
    }
    int64_t layer_block_bytes() const { return int64_t(layout_.block_tokens) * n_kv_heads_ * kv_row_bytes_; }
    int64_t kv_block_bytes() const override { return 2 * int64_t(kv_.size()) * layer_block_bytes(); }
    void kv_download_block(int32_t b, uint8_t* host) override {
        const int64_t bb = layer_block_bytes();
        for (const KvStore& l : kv_) {
            std::memcpy(host, l.k.data() + b * bb, bb);
            std::memcpy(host + bb, l.v.data() + b * bb, bb);
            host += 2 * bb;
        }
    }
    void kv_upload_block(int32_t b, const uint8_t* host) override {
        const int64_t bb = layer_block_bytes();
        for (KvStore& l : kv_) {
            std::memcpy(l.k.data() + b * bb, host, bb);
            std::memcpy(l.v.data() + b * bb, host + bb, bb);
            host += 2 * bb;
        }
    }

    void embed(const int32_t* tokens, int32_t n, const Matrix& table, float* x) override {
        std::vector<uint8_t> scratch(table.packing == Packing::kRows ? 0 : table.row_bytes);
        for (int32_t t = 0; t < n; ++t)
            dequantize_row(table.type, cpu::plain_row(table, tokens[t], scratch.data()), x + int64_t(t) * table.cols,
                           table.cols);
    }
    void rmsnorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* y) override {
        cpu::rmsnorm(x, w, rows, dim, eps, y);
    }
    void matmul(const float* x, int32_t n, const Matrix& W, float* y) override {
        exact_ ? cpu::matmul(x, n, W, y) : cpu::matmul_fast(x, n, W, y);
    }
    void matmuls_of_one_input(const float* x, int32_t n, std::span<const Matrix* const> Ws,
                              std::span<float* const> ys) override {
        if (exact_) return Backend::matmuls_of_one_input(x, n, Ws, ys);
        cpu::matmuls_fast(x, n, Ws, ys);
    }
    void add(float* y, const float* x, int64_t n) override {
        for (int64_t i = 0; i < n; ++i) y[i] += x[i];
    }
    void swiglu(const float* gate, const float* up, int64_t count, float* out) override {
        exact_ ? cpu::swiglu(gate, up, count, out) : cpu::swiglu_fast(gate, up, count, out);
    }
    void copy_rows(const float* x, const int32_t* rows, int32_t n_rows, int64_t dim, float* y) override {
        for (int32_t i = 0; i < n_rows; ++i) std::memmove(y + int64_t(i) * dim, x + int64_t(rows[i]) * dim, dim * sizeof(float));
    }

    void gdn_mixer(const StepBatch& b, int32_t gdn_layer, const GdnDims& d, const GdnWeights& w, float eps,
                   float* qkv, const float* z, const float* bp, const float* ap, float* o) override {
        StateCtx ctx{this, gdn_layer};
        cpu::gdn_mixer(b, d, w, eps, qkv, z, bp, ap, o, &StateCtx::get, &ctx, /*fast=*/!exact_,
                       gdn_layer < int32_t(conv_taps_.size()) ? conv_taps_[gdn_layer].data() : nullptr);
    }

    void attention(const StepBatch& b, int32_t attn_layer, const AttnDims& d, const AttnWeights& w, float eps,
                   const float* qg, const float* k, const float* v, float* out) override {
        KvStore& l = kv_[attn_layer];
        cpu::KvLayer kv{layout_.kv_type, layout_.block_tokens, kv_row_bytes_, l.k.data(), l.v.data()};
        cpu::attention(b, d, w, eps, qg, k, v, out, kv, /*fast=*/!exact_);
    }

    void moe_ffn(const float* x, int32_t n, const MoeWeights& w, int64_t top_k, float* y) override {
        cpu::moe_ffn(x, n, w, top_k, y, exact_ ? cpu::matmul : cpu::matmul_fast);
    }

    // The logits are host memory already: the host sampler reads them in place (no copy).
    absl::Status sample(const float* logits, int32_t n_logit_rows, int64_t vocab, std::span<const SampleRow> rows,
                        std::vector<SampledToken>* out) override {
        DG_RETURN_IF_ERROR(validate_sample_rows(rows, n_logit_rows, vocab));
        sample_rows_host(logits, vocab, rows, out);
        return absl::OkStatus();
    }

private:
    struct StateCtx {
        CpuBackend* self;
        int32_t layer;
        static cpu::GdnState get(void* p, int32_t s) {
            auto* c = static_cast<StateCtx*>(p);
            float* base = c->self->slot(s) + int64_t(c->layer) * (c->self->conv_floats_ + c->self->s_floats_);
            return {base, base + c->self->conv_floats_};
        }
    };
    // A zeroed buffer in 2 MiB pages (huge_page_weights.h's mapping), written once at once so that the
    // pool's memory is committed when init_caches returns, as with the vectors it replaced. A decode step
    // reads every cached K/V row of its sequence and reads and writes the GDN state (18 MiB per sequence for
    // the 0.8B): from 4 KiB pages each of those pages is a TLB miss, under a hypervisor a two-level walk.
    struct HugeBuffer {
        std::shared_ptr<uint8_t> bytes;
        uint8_t* data() const { return bytes.get(); }
    };
    static absl::StatusOr<HugeBuffer> zeroed_huge_buffer(uint64_t n, const char* what) {
        if (n == 0) return HugeBuffer{};
        auto m = cpu::map_huge_pages(n);
        if (!m.ok()) return absl::ResourceExhaustedError(absl::StrCat(what, ": ", m.status().message()));
        std::memset(m->get(), 0, n);  // the mapping reads as zeros already: this commits its pages
        return HugeBuffer{std::move(*m)};
    }
    struct KvStore {
        HugeBuffer k, v;
    };

    bool exact_;  // the f32 oracle matmul instead of the quantised-activation one
    std::string placement_;  // where place_weights put the matrices ("" when it left them)
    CacheLayout layout_;
    int64_t kv_row_bytes_ = 0, n_kv_heads_ = 0, conv_floats_ = 0, s_floats_ = 0, n_gdn_ = 0;
    std::vector<KvStore> kv_;
    HugeBuffer states_;  // floats [slot][gdn layer][conv (K-1)*C | S Hv*dk*dv]
    std::vector<std::vector<float>> conv_taps_;  // per GDN layer, the fast conv's taps [K][conv_dim]
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(bool exact) { return std::make_unique<CpuBackend>(exact); }

}  // namespace dg
