// Memory planning for a worker: how many KV blocks and state slots fit next to the weights and the
// step workspace, within a budget taken from the device's free and total memory and the operator's
// flags. Pure arithmetic (plan_memory and the estimates take numbers and return numbers) so every figure
// is unit-tested; the only I/O here is device_memory(), which asks CUDA (cudaMemGetInfo) or reads
// /proc/meminfo. Policy and figures: docs/worker.md, "Memory plan".
//
//   budget    = min(floor(utilization × total), free)          free and total measured before the
//                                                              weights are loaded onto the device
//   fixed     = weights + workspace + reserve (+ host cache, when the device is host RAM)
//   state     = (max_running + spare_slots) × state bytes per slot
//   KV blocks = explicit --kv-blocks, or a fixed default, or floor((budget − fixed − state) / block bytes)
//   planned   = fixed + state + KV blocks × block bytes ≤ budget, always (else an error naming a flag)
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engine/formats/dtype.h"
#include "engine/model_config.h"

namespace dg {

// Bytes of one KV block over every full-attention layer: K and V, `block_tokens` tokens, Hkv heads,
// one row of head_dim values in `kv_type` (GGUF block layout for q8_0/q4_0). 0 without attention layers.
absl::StatusOr<int64_t> kv_block_bytes(const ModelConfig& c, DType kv_type, int32_t block_tokens);
// Bytes of one GDN state slot over every GDN layer: conv state (K−1) × conv_dim + recurrent state
// Hv × dk × dv, all fp32 (== ModelConfig::state_bytes_per_seq).
int64_t state_slot_bytes(const ModelConfig& c);

// Where the pools live. The CUDA backend allocates them in device memory; the CPU backend in host RAM,
// so for it "the device" is host RAM and the host-RAM checkpoint cache competes for the same bytes.
enum class MemoryTarget { kCudaDevice, kHostRam };

// The largest step's working memory, term by term (bytes). n = token budget (tokens per step),
// r = logit rows per step = min(max_running, n), L = max sequence length.
struct WorkspaceEstimate {
    // Model::reserve (engine/model.cpp), f32, exact for n tokens:
    //   n × (3H + max(conv_dim, 2·Hq·hd) + max(Hv·dv, Hkv·hd) + Hkv·hd + 2·Hv + max(Hv·dv, Hq·hd) + 2·I)
    //   with I = max(intermediate, shared_intermediate, 1)
    int64_t activations = 0;
    // r × (H + V) f32: the rows that reach the head and their logits.
    int64_t logits = 0;
    // The backend's own per-step scratch at its largest (attention, GDN, MoE, index arrays).
    //   CUDA: growable buffers, counted twice their largest need (d = min(max_running, n) sequences):
    //     2 × 4 × (2·n·Hv  GDN  + n·E + 2·n·max(Is, Ie) + 2·n·H + 2·n  MoE
    //              + n + max(n, r) + 6·d + max_running·ceil(L / block_tokens)  ids, descriptors, block tables)
    //     (attention and the sampler: the two fields below)
    //   CPU: freed after each op, one op at a time:
    //     4 × max(2·Hkv·L·hd  attention's dequantised K/V of one sequence,
    //             2·n·max(Is, Ie, I) + n·E + 2·n·H  MoE,  2·n·Hv + n·conv_dim  GDN)
    //     + 4 × r × V  the logits copied to the host
    int64_t backend_scratch = 0;
    // CUDA only (0 on the CPU), split out of the scratch so the plan prints them, each counted twice:
    //   attention = 2 × 4 × max over d' ≤ d of d'·Hq·splits(d')·(hd + 2): the decode split partials
    //     (engine/cuda/attention_geometry.h); no score buffer, nothing grows with L
    //   sampler = 2 × r × (4·V + 8·pow2(V) + 8·V + 8·min(L, V) + 256): per sampled row the penalised
    //     logits, sort keys over V rounded up to a power of two, probabilities, penalty entries, and
    //     the row's descriptor and result (engine/cuda/sampling.cu)
    int64_t attention = 0, sampler = 0;
    int64_t total() const { return activations + logits + backend_scratch + attention + sampler; }
};
WorkspaceEstimate estimate_workspace(const ModelConfig& c, MemoryTarget target, int32_t token_budget,
                                     int32_t max_running, int32_t max_seq_len, int32_t block_tokens);

struct MemoryPlanInput {
    ModelConfig config;
    MemoryTarget target = MemoryTarget::kCudaDevice;
    std::string device_name;          // for the table: "NVIDIA H100 80GB HBM3", "host RAM"

    // Measured before the weights are loaded onto the device.
    int64_t device_total_bytes = 0;
    int64_t device_free_bytes = 0;
    double utilization = 0.9;         // --gpu-memory-utilization, in (0, 1]

    int64_t weights_bytes = 0;        // as held by the backend (ModelWeights::total_bytes)
    int64_t reserve_bytes = 0;        // runtime overhead the pools must leave (see default_reserve_bytes)

    DType kv_type = DType::F16;
    int32_t block_tokens = 16;
    int32_t token_budget = 256;
    int32_t max_seq_len = 0;          // resolved (the model's context when the flag is 0); 0 = config.max_context

    int32_t max_running = 8;
    int32_t spare_slots = 8;
    // KV blocks: > 0 = exactly this many (an explicit flag, or the CPU default); 0 = all that the
    // budget leaves (at least one sequence of max_seq_len tokens plus a block per running sequence).
    int32_t kv_blocks = 0;

    // The host-RAM checkpoint cache (--host-cache). Counted in the budget when target is kHostRam;
    // for kCudaDevice it is checked against host_available_bytes instead (when that is > 0).
    int64_t host_cache_bytes = 0;
    int64_t host_available_bytes = 0;

    // Which figures the operator set explicitly: errors name the flag to change.
    bool max_running_flag = false, spare_slots_flag = false, kv_blocks_flag = false, utilization_flag = false;
};

struct MemoryPlan {
    MemoryTarget target = MemoryTarget::kCudaDevice;
    std::string device_name;
    int64_t device_total_bytes = 0, device_free_bytes = 0;
    double utilization = 0;
    int64_t budget_bytes = 0;         // min(floor(utilization × total), free)
    bool budget_limited_by_free = false;

    int64_t weights_bytes = 0;
    WorkspaceEstimate workspace;
    int32_t token_budget = 0, max_seq_len = 0;
    int64_t reserve_bytes = 0;
    int64_t host_cache_bytes = 0;     // counted in the budget (kHostRam only; else 0)

    int32_t max_running = 0, spare_slots = 0;
    int64_t state_slot_bytes = 0;
    int32_t state_slots() const { return max_running + spare_slots; }
    int64_t state_bytes() const { return int64_t(state_slots()) * state_slot_bytes; }

    DType kv_type = DType::F16;
    int32_t block_tokens = 0;
    int32_t kv_blocks = 0;
    bool kv_sized_from_memory = false;
    int64_t kv_block_bytes = 0;
    int64_t kv_bytes() const { return int64_t(kv_blocks) * kv_block_bytes; }
    int64_t kv_tokens() const { return int64_t(kv_blocks) * block_tokens; }

    int64_t planned_bytes() const {
        return weights_bytes + workspace.total() + reserve_bytes + host_cache_bytes + state_bytes() + kv_bytes();
    }
    int64_t free_after_bytes() const { return device_free_bytes - planned_bytes(); }  // predicted

    // The start-up table (multi-line, each line indented by two spaces, no trailing newline).
    std::string table() const;
};

// The most KV blocks a pool may have (the --kv-blocks flag's limit).
constexpr int32_t kMaxKvBlocks = 1 << 24;

// ResourceExhausted when the plan cannot fit the budget (the message names the flag to change and the
// numbers); InvalidArgument for inputs out of range.
absl::StatusOr<MemoryPlan> plan_memory(const MemoryPlanInput& in);

// Runtime overhead outside the planned pools: CUDA: 512 MiB (allocator granularity, cuBLAS workspaces,
// lazily loaded kernel modules, CUDA graphs later); host RAM: 256 MiB (the process: gRPC, tokenizer,
// scheduler bookkeeping).
int64_t default_reserve_bytes(MemoryTarget target);

// "15.09 GiB", "256.00 MiB", "512 B" (binary units).
std::string format_bytes(int64_t bytes);

// --- measuring (not pure)

struct DeviceMemory {
    int64_t total_bytes = 0;
    int64_t free_bytes = 0;
    std::string name;
};
// CUDA: cudaMemGetInfo on the current device (FailedPrecondition in a build without CUDA or with no
// device). Host: MemTotal and MemAvailable from /proc/meminfo.
absl::StatusOr<DeviceMemory> device_memory(MemoryTarget target);
absl::StatusOr<DeviceMemory> host_memory();
// Parses /proc/meminfo text (MemTotal, MemAvailable; kB).
absl::StatusOr<DeviceMemory> parse_meminfo(const std::string& text);

}  // namespace dg
