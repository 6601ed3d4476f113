// The backend interface: the coarse fused ops the forward pass (engine/model.cpp) is written over, plus
// memory for activations, KV blocks and state slots. The CPU backend (engine/cpu/) implements every op
// plainly and is the oracle for the CUDA backend (engine/cuda/), op by op. A backend is chosen once, at
// model load (make_backend), and never switched.
//
// Pointers passed to ops are backend memory (host for CPU, device for CUDA) from alloc(), except
// Matrix data and the small f32 weight vectors, which the backend maps with prepare_weights().
// Activations are f32, row-major, one row per token.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "engine/batch.h"
#include "engine/formats/dtype.h"
#include "engine/sampling.h"
#include "engine/weights.h"

namespace dg {

// Storage of the paged KV cache of every full-attention layer, and of the GDN state slots.
struct CacheLayout {
    DType kv_type = DType::F16;   // f32, f16, bf16, q8_0, q4_0
    int32_t block_tokens = 16;    // tokens per KV block
    int32_t n_blocks = 0;         // blocks per attention layer
    int32_t n_state_slots = 0;    // GDN state slots (running sequences + checkpoint spares)
};

struct GdnDims { int64_t Hk, Hv, dk, dv, K, conv_dim; };
struct AttnDims { int64_t Hq, Hkv, hd, rotary_dim; float rope_theta; };

class Backend {
public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;
    // What it runs on, for people: "host CPU", a GPU's name, or the CPU emulation of CUDA.
    virtual std::string device_name() const = 0;

    // --- device errors. Ops have no status channel: a backend whose device can fail (CUDA) records the
    // first failure, skips later ops, and hands the error out here (Model::forward returns it for the
    // step). device_lost(): the device cannot run anything again (the worker stops serving).
    virtual absl::Status take_error() { return absl::OkStatus(); }
    virtual bool device_lost() const { return false; }

    // --- memory
    virtual absl::StatusOr<float*> alloc_f32(int64_t n) = 0;
    virtual void free(float* p) = 0;
    virtual void to_host(const float* src, float* dst_host, int64_t n) = 0;
    virtual void from_host(const float* src_host, float* dst, int64_t n) = 0;
    // Called once, before prepare_weights: may move the matrices' data to memory the backend streams
    // faster (the serving CPU backend: 2 MiB pages, huge_page_weights.h), repointing every Matrix. The
    // bytes stay the same. Default: the weights stay where the loader put them.
    virtual absl::Status place_weights(ModelWeights& w) { return absl::OkStatus(); }
    // Makes the weights usable by the ops (CUDA: uploads; CPU: the conv taps in the fast kernels' order).
    virtual absl::Status prepare_weights(const ModelWeights& w) = 0;

    // --- caches: KV blocks for `n_attn_layers` layers and GDN state slots for `n_gdn_layers` layers
    virtual absl::Status init_caches(const ModelConfig& c, const CacheLayout& layout) = 0;
    virtual const CacheLayout& cache_layout() const = 0;
    virtual void state_clear(int32_t slot) = 0;                        // fresh sequence: zero conv + S
    virtual void state_copy(int32_t dst_slot, int32_t src_slot) = 0;   // fork / checkpoint / restore on device
    virtual int64_t state_floats() const = 0;                           // floats in one slot
    virtual void state_download(int32_t slot, float* host) = 0;        // checkpoint to host RAM
    virtual void state_upload(int32_t slot, const float* host) = 0;    // restore from host RAM
    // Copies KV block `src` to `dst` in every attention layer (K and V). The scheduler uses it to give a
    // sequence resuming from a checkpoint at a position inside a block its own copy of that block.
    virtual void kv_copy_block(int32_t dst, int32_t src) = 0;
    // The host-RAM tier of the KV cache (scheduler/state_cache.h): one block's K and V of every attention
    // layer as kv_block_bytes() opaque bytes (per layer: K, then V, in the cache's own kv_type encoding),
    // so a cached block the pool evicts can come back bit-identical instead of being recomputed.
    virtual int64_t kv_block_bytes() const = 0;
    virtual void kv_download_block(int32_t block, uint8_t* host) = 0;
    virtual void kv_upload_block(int32_t block, const uint8_t* host) = 0;

    // --- the step. Model::run calls begin_step once per step, after validating the batch and before the
    // step's first op, with the rows whose hidden states it will gather for logits (copy_rows) and the rows
    // it will sample (empty when the logits go to the host). The step ends with to_host of its logits or
    // with sample(). A backend that runs asynchronously (CUDA: one stream, one metadata upload per step,
    // decode steps as CUDA graphs) prepares the step here; ops called outside a step (tests) still work.
    virtual void begin_step(const StepBatch& b, std::span<const int32_t> logit_rows,
                            std::span<const SampleRow> sample_rows) {
        (void)b, (void)logit_rows, (void)sample_rows;
    }

    // --- ops (n = rows/tokens in the step)
    virtual void embed(const int32_t* tokens, int32_t n, const Matrix& table, float* x_n_h) = 0;
    // y = x / sqrt(mean(x^2) + eps) * w (w already holds 1+w for zero-centred norms). x and y may alias.
    virtual void rmsnorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* y) = 0;
    // y[n, W.rows] = x[n, W.cols] · Wᵀ, fp32 accumulation.
    virtual void matmul(const float* x, int32_t n, const Matrix& W, float* y) = 0;
    // Several matmuls of one input, ys[i][n, Ws[i]->rows] = x · Ws[i]ᵀ (every Ws[i]->cols the same): the
    // projections that read one normed hidden state (q/k/v, the mixer's qkv/z/b/a, gate/up). A backend may
    // share work between them (the CUDA serving backend quantises x once for all of them); the default
    // is one matmul each.
    virtual void matmuls_of_one_input(const float* x, int32_t n, std::span<const Matrix* const> Ws,
                                      std::span<float* const> ys) {
        for (size_t i = 0; i < Ws.size(); ++i) matmul(x, n, *Ws[i], ys[i]);
    }
    virtual void add(float* y, const float* x, int64_t n) = 0;  // y += x
    // The step between two sub-layers: x[rows, dim] += r (the residual add), then y = rmsnorm(x) as
    // rmsnorm() computes it. One op so a backend can fuse it (the CUDA backend: one launch, which also
    // makes y's 8-bit activation blocks for the quantised matmuls that read y next); the default is
    // add() then rmsnorm(), and any backend's result must equal that.
    virtual void add_rmsnorm(float* x, const float* r, const float* w, int64_t rows, int64_t dim, float eps, float* y) {
        add(x, r, rows * dim);
        rmsnorm(x, w, rows, dim, eps, y);
    }
    // out = SiLU(gate) * up, elementwise over `count` values. out may alias gate.
    virtual void swiglu(const float* gate, const float* up, int64_t count, float* out) = 0;
    // y[i] = x[rows[i]] for i < n_rows (rows: host array), dim floats per row.
    virtual void copy_rows(const float* x, const int32_t* rows, int32_t n_rows, int64_t dim, float* y) = 0;

    // Gated DeltaNet mixer core, for one layer `gdn_layer` (index among GDN layers):
    //   qkv_n_c: in_proj_qkv outputs (pre-conv); z_n_v: gate; b_n_hv, a_n_hv: beta/alpha projections.
    //   Runs conv (+state), SiLU, gates, L2 norm, delta rule (chunked for len > 1, recurrent for len 1),
    //   and the gated RMSNorm; writes o_n_v [n, Hv*dv] ready for out_proj. Updates each sequence's slot.
    virtual void gdn_mixer(const StepBatch& b, int32_t gdn_layer, const GdnDims& d, const GdnWeights& w,
                           float eps, float* qkv_n_c, const float* z_n_v, const float* b_n_hv,
                           const float* a_n_hv, float* o_n_v) = 0;

    // Gated attention core for attention layer `attn_layer`: splits q_proj output into query and gate,
    // q/k RMSNorm, partial RoPE at each row's position, writes K/V into the sequence's blocks, causal
    // GQA softmax attention over [0, pos], multiplies by sigmoid(gate). out_n_q: [n, Hq*hd].
    virtual void attention(const StepBatch& b, int32_t attn_layer, const AttnDims& d, const AttnWeights& w,
                           float eps, const float* qg_n_2q, const float* k_n_kv, const float* v_n_kv,
                           float* out_n_q) = 0;

    // MoE FFN: softmax router, top-k renormalised, experts, sigmoid-gated shared expert. y[n, H].
    virtual void moe_ffn(const float* x_n_h, int32_t n, const MoeWeights& w, int64_t top_k, float* y_n_h) = 0;

    // --- sampling where the logits are. `logits`: backend memory [n_logit_rows][vocab] (Model::forward's).
    // Returns one SampledToken per row, in order: only token ids (and the logprobs a row asks for) leave
    // the device. CPU: sample_rows_host (engine/sampling.h), the oracle. CUDA: engine/cuda/sampling.cu,
    // which makes the same token choices bit for bit (docs/cuda.md "Sampling").
    virtual absl::Status sample(const float* logits, int32_t n_logit_rows, int64_t vocab,
                                std::span<const SampleRow> rows, std::vector<SampledToken>* out) = 0;
};

// kCpu: the serving CPU path (quantised weights dotted with 8-bit activation blocks, engine/cpu/quant_dot.h).
// kCpuExact: the oracle (f32 activations, exact dequantisation) that goldens, exactness and CUDA-vs-CPU
// tests use; the two differ only in matmuls with quantised weights.
// kCuda: the serving CUDA path (GEMV with 8-bit activation blocks at decode, bf16 tensor-core GEMM at
// prefill: engine/cuda/matmul.cuh). kCudaExact: the CUDA twin of kCpuExact (every matmul on the fp32
// oracle kernel), for the tests that require CUDA's greedy tokens to equal the oracle's.
enum class BackendKind { kCpu, kCuda, kCpuExact, kCudaExact };
absl::StatusOr<BackendKind> backend_kind_from_name(const std::string& name);  // cpu | cpu-exact | cuda | cuda-exact
inline bool is_cuda(BackendKind k) { return k == BackendKind::kCuda || k == BackendKind::kCudaExact; }
// CUDA without a GPU (or a build without CUDA) is a clear FailedPrecondition, never a silent CPU run.
absl::StatusOr<std::unique_ptr<Backend>> make_backend(BackendKind kind);
bool cuda_available();  // built with CUDA and a device is present (the CPU emulation counts as one)
bool cuda_emulated();   // the cuda backend is the CPU emulation (-DDELTAGATE_CUDA_EMU=ON)
// The backend a command uses when none is named: cuda on a real GPU, else cpu. The emulation is never a
// default: it runs the CUDA sources for testing, far slower than the CPU backend.
BackendKind default_backend_kind();

}  // namespace dg
