// The memory planner (engine/memory_plan.h): arithmetic only, plus the two memory queries at the end.
#include "engine/memory_plan.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/cuda/attention_geometry.h"
#include "engine/status.h"

#ifdef DELTAGATE_HAVE_CUDA
#include "engine/cuda/cuda_device.h"
#endif

namespace dg {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

const char* target_name(MemoryTarget t) { return t == MemoryTarget::kCudaDevice ? "device" : "host RAM"; }

}  // namespace

absl::StatusOr<int64_t> kv_block_bytes(const ModelConfig& c, DType kv_type, int32_t block_tokens) {
    const int64_t layers = c.n_attention_layers();
    if (layers == 0) return 0;
    auto rb = row_bytes(kv_type, c.head_dim);
    if (!rb.ok())
        return absl::InvalidArgumentError(absl::StrCat("KV cache type ", dtype_info(kv_type).name,
                                                       " cannot store head_dim ", c.head_dim, ": ", rb.status().message()));
    return layers * 2 * int64_t(block_tokens) * c.n_kv_heads * int64_t(*rb);
}

int64_t state_slot_bytes(const ModelConfig& c) {
    const int64_t per_layer = (c.conv_kernel - 1) * c.conv_dim() + c.lin_v_heads * c.lin_k_dim * c.lin_v_dim;
    return c.n_gdn_layers() * per_layer * 4;
}

WorkspaceEstimate estimate_workspace(const ModelConfig& c, MemoryTarget target, int32_t token_budget,
                                     int32_t max_running, int32_t max_seq_len, int32_t block_tokens) {
    const int64_t n = std::max(token_budget, 1);
    const int64_t r = std::min<int64_t>(std::max(max_running, 1), n);
    const int64_t L = max_seq_len > 0 ? max_seq_len : c.max_context;
    const int64_t H = c.hidden, V = c.vocab_size, C = c.conv_dim();
    const int64_t Hq = c.n_heads, Hkv = c.n_kv_heads, hd = c.head_dim, Hv = c.lin_v_heads;
    const int64_t vdim = Hv * c.lin_v_dim, qdim = Hq * hd, kvdim = Hkv * hd;
    const int64_t I = std::max({c.intermediate, c.shared_intermediate, int64_t(1)});
    const bool attn = c.n_attention_layers() > 0, gdn = c.n_gdn_layers() > 0;

    WorkspaceEstimate w;
    w.activations = 4 * n *
                    (3 * H + std::max(C, 2 * qdim) + std::max(vdim, kvdim) + kvdim + 2 * Hv + std::max(vdim, qdim) + 2 * I);
    w.logits = 4 * r * (H + V);

    const int64_t moe_I = c.is_moe() ? std::max(c.shared_intermediate, c.expert_intermediate) : 0;
    if (target == MemoryTarget::kCudaDevice) {
        // Attention (engine/cuda/attention.cu) keeps no score buffer: its only scratch is the decode
        // partials, at most d decode sequences × Hq × splits(d) × (hd + 2) floats with d ≤ min(running, n);
        // the split count shrinks as the batch grows (attention_geometry.h), so take the largest d·splits.
        const int64_t seqs = std::min<int64_t>(std::max(max_running, 1), n);  // sequences in one step
        int64_t partials = 0;
        if (attn)
            for (int64_t dn = 1; dn <= seqs; ++dn)
                partials = std::max(partials, cuda::attn_workspace_floats(dn, Hq, Hkv, hd, 0));
        int64_t floats = 0;
        if (gdn) floats += 2 * n * Hv;
        if (c.is_moe()) floats += n * c.n_experts + 2 * n * moe_I + 2 * n * H + 2 * n;
        // Token / row ids, attention's per-layer upload (a 24-byte descriptor per sequence and the block
        // tables of the running sequences).
        const int64_t ids = n + std::max(n, r) + 6 * seqs + int64_t(std::max(max_running, 1)) * ceil_div(L, std::max(block_tokens, 1));
        // The device sampler (engine/cuda/sampling.cu), per sampled row (at most r): a penalised-logits
        // row (f32), a sort-key row over vocab rounded up to a power of two (u64) and a probability row
        // (f64), the penalty entries (one 8-byte entry per distinct history token, at most min(L, V)),
        // and the row's descriptor and result (under 256 bytes).
        int64_t pow2 = 1;
        while (pow2 < V) pow2 <<= 1;
        const int64_t sampler = r * (4 * V + 8 * pow2 + 8 * V + 8 * std::min(L, V) + 256);
        // Growable buffers: each counted twice its largest need.
        w.attention = 2 * 4 * partials;
        w.sampler = 2 * sampler;
        w.backend_scratch = 2 * 4 * (floats + ids);
    } else {
        int64_t op = 0;
        if (attn) op = std::max(op, 2 * Hkv * L * hd);
        if (c.is_moe()) op = std::max(op, 2 * n * std::max(moe_I, I) + n * c.n_experts + 2 * n * H);
        if (gdn) op = std::max(op, 2 * n * Hv + n * C);
        w.backend_scratch = 4 * op + 4 * r * V;
    }
    return w;
}

int64_t default_reserve_bytes(MemoryTarget target) {
    return target == MemoryTarget::kCudaDevice ? int64_t(512) << 20 : int64_t(256) << 20;
}

std::string format_bytes(int64_t b) {
    const double v = double(b), a = std::fabs(v);
    if (a >= double(int64_t(1) << 30)) return absl::StrFormat("%.2f GiB", v / double(int64_t(1) << 30));
    if (a >= double(int64_t(1) << 20)) return absl::StrFormat("%.2f MiB", v / double(int64_t(1) << 20));
    if (a >= 1024) return absl::StrFormat("%.2f KiB", v / 1024);
    return absl::StrCat(b, " B");
}

namespace {

// "budget 72.00 GiB = min(0.90 × total 80.00 GiB, free 79.50 GiB)"
std::string budget_text(const MemoryPlan& p) {
    return absl::StrFormat("budget %s = min(%.2f × total %s, free %s) of %s", format_bytes(p.budget_bytes),
                           p.utilization, format_bytes(p.device_total_bytes), format_bytes(p.device_free_bytes),
                           target_name(p.target));
}

std::string fixed_text(const MemoryPlan& p) {
    std::string s = absl::StrCat("weights ", format_bytes(p.weights_bytes), ", workspace ",
                                 format_bytes(p.workspace.total()), " (--token-budget ", p.token_budget,
                                 ", --max-seq-len ", p.max_seq_len, "), reserve ", format_bytes(p.reserve_bytes));
    if (p.host_cache_bytes > 0) absl::StrAppend(&s, ", host cache ", format_bytes(p.host_cache_bytes), " (--host-cache)");
    return s;
}

std::string flag_value(const char* flag, int64_t v, bool explicit_flag) {
    return absl::StrCat(flag, " ", v, explicit_flag ? "" : " (default)");
}

absl::Status no_fit(const MemoryPlan& p, const std::string& what) {
    return absl::ResourceExhaustedError(absl::StrCat("memory plan: ", what, " [", budget_text(p), "; ", fixed_text(p), "]"));
}

}  // namespace

absl::StatusOr<MemoryPlan> plan_memory(const MemoryPlanInput& in) {
    const ModelConfig& c = in.config;
    if (!(in.utilization > 0 && in.utilization <= 1))
        return absl::InvalidArgumentError(
            absl::StrCat("--gpu-memory-utilization must be in (0, 1], got ", in.utilization));
    if (in.device_total_bytes <= 0 || in.device_free_bytes < 0)
        return absl::InvalidArgumentError(absl::StrCat("memory plan: ", target_name(in.target), " reports total ",
                                                       in.device_total_bytes, " and free ", in.device_free_bytes, " bytes"));
    if (in.weights_bytes < 0 || in.reserve_bytes < 0 || in.host_cache_bytes < 0)
        return absl::InvalidArgumentError("memory plan: weights, reserve and host cache bytes must be >= 0");
    if (in.block_tokens < 1 || in.token_budget < 1 || in.max_running < 1 || in.spare_slots < 0 || in.kv_blocks < 0 ||
        in.max_seq_len < 0 || in.kv_blocks > kMaxKvBlocks)
        return absl::InvalidArgumentError(
            "memory plan: block_tokens, token_budget and max_running must be >= 1; spare_slots, kv_blocks and "
            "max_seq_len >= 0");

    MemoryPlan p;
    p.target = in.target;
    p.device_name = in.device_name.empty() ? target_name(in.target) : in.device_name;
    p.device_total_bytes = in.device_total_bytes;
    p.device_free_bytes = in.device_free_bytes;
    p.utilization = in.utilization;
    const int64_t by_fraction = int64_t(std::floor((long double)(in.utilization) * (long double)(in.device_total_bytes)));
    p.budget_bytes = std::min(by_fraction, in.device_free_bytes);
    p.budget_limited_by_free = in.device_free_bytes < by_fraction;
    p.weights_bytes = in.weights_bytes;
    p.token_budget = in.token_budget;
    p.max_seq_len = int32_t(in.max_seq_len > 0 ? in.max_seq_len : std::min<int64_t>(c.max_context, INT32_MAX));
    p.reserve_bytes = in.reserve_bytes;
    p.host_cache_bytes = in.target == MemoryTarget::kHostRam ? in.host_cache_bytes : 0;
    p.max_running = in.max_running;
    p.spare_slots = in.spare_slots;
    p.state_slot_bytes = state_slot_bytes(c);
    p.kv_type = in.kv_type;
    p.block_tokens = in.block_tokens;
    DG_ASSIGN_OR_RETURN(p.kv_block_bytes, kv_block_bytes(c, in.kv_type, in.block_tokens));
    p.workspace = estimate_workspace(c, in.target, in.token_budget, in.max_running, p.max_seq_len, in.block_tokens);

    const std::string more_memory =
        in.utilization < 1 ? absl::StrFormat("raise --gpu-memory-utilization (%.2f)", in.utilization)
                           : std::string("use a device with more free memory");

    // 1. Weights, workspace, reserve (and on the CPU the host cache) come first.
    if (p.weights_bytes > p.budget_bytes)
        return no_fit(p, absl::StrCat("the weights alone (", format_bytes(p.weights_bytes), ") exceed the budget (",
                                      format_bytes(p.budget_bytes), "): ", more_memory,
                                      ", free the device or use a smaller quantization"));
    const int64_t fixed = p.weights_bytes + p.workspace.total() + p.reserve_bytes + p.host_cache_bytes;
    if (fixed > p.budget_bytes)
        return no_fit(p, absl::StrCat("weights + workspace + reserve", p.host_cache_bytes ? " + host cache" : "", " need ",
                                      format_bytes(fixed), ", more than the budget ", format_bytes(p.budget_bytes),
                                      ": lower --token-budget or --max-seq-len (the workspace grows with both)",
                                      p.host_cache_bytes ? " or --host-cache" : "", ", or ", more_memory));

    // 2. One state slot per running sequence plus the spare slots for device checkpoints.
    const int64_t left_for_state = p.budget_bytes - fixed;
    if (p.state_bytes() > left_for_state) {
        const int64_t fit = p.state_slot_bytes > 0 ? left_for_state / p.state_slot_bytes : 0;
        return no_fit(p, absl::StrCat(
                             "state slots need ", format_bytes(p.state_bytes()), " (",
                             flag_value("--max-running", p.max_running, in.max_running_flag), " + ",
                             flag_value("--spare-slots", p.spare_slots, in.spare_slots_flag), " = ", p.state_slots(),
                             " slots × ", format_bytes(p.state_slot_bytes), ") but ", format_bytes(left_for_state),
                             " is left: at most ", fit, " slots fit; lower --max-running or --spare-slots, or ",
                             more_memory));
    }

    // 3. KV blocks: explicit (or a fixed default), or all that is left.
    const int64_t left_for_kv = left_for_state - p.state_bytes();
    const int64_t blocks_fit =
        p.kv_block_bytes > 0 ? std::min<int64_t>(left_for_kv / p.kv_block_bytes, kMaxKvBlocks) : kMaxKvBlocks;
    const int64_t per_seq_blocks = ceil_div(p.max_seq_len, p.block_tokens);
    if (in.kv_blocks > 0) {
        p.kv_blocks = in.kv_blocks;
        if (p.kv_bytes() > left_for_kv)
            return no_fit(p, absl::StrCat(flag_value("--kv-blocks", in.kv_blocks, in.kv_blocks_flag), " needs ",
                                          format_bytes(p.kv_bytes()), " (", format_bytes(p.kv_block_bytes),
                                          " per block) but ", format_bytes(left_for_kv), " is left after ",
                                          p.state_slots(), " state slots (", format_bytes(p.state_bytes()),
                                          "): at most ", blocks_fit, " blocks fit; lower --kv-blocks, --max-running or "
                                          "--spare-slots, or ", more_memory));
    } else {
        p.kv_sized_from_memory = true;
        const int64_t need = per_seq_blocks + p.max_running;  // one full-length sequence + a block of headroom each
        if (p.kv_block_bytes == 0) {
            p.kv_blocks = int32_t(std::min<int64_t>(per_seq_blocks * p.max_running, kMaxKvBlocks));  // bookkeeping only
        } else if (blocks_fit < need) {
            return no_fit(p, absl::StrCat(
                                 "the KV pool gets ", std::max<int64_t>(blocks_fit, 0), " blocks (",
                                 std::max<int64_t>(blocks_fit, 0) * p.block_tokens, " tokens, ",
                                 format_bytes(p.kv_block_bytes), " per block of ", p.block_tokens,
                                 " tokens) after the state slots (", format_bytes(p.state_bytes()), "), fewer than the ",
                                 need, " that one sequence of --max-seq-len ", p.max_seq_len, " tokens needs (plus one per "
                                 "running sequence): lower --max-seq-len, --max-running or --spare-slots, use a smaller "
                                 "--kv-type, or ", more_memory));
        } else {
            p.kv_blocks = int32_t(blocks_fit);
        }
    }

    // 4. On a GPU the host-RAM checkpoint cache must fit the host.
    if (in.target == MemoryTarget::kCudaDevice && in.host_available_bytes > 0 &&
        in.host_cache_bytes > in.host_available_bytes)
        return absl::ResourceExhaustedError(absl::StrCat("memory plan: --host-cache ", format_bytes(in.host_cache_bytes),
                                                         " is more than the host's available RAM (",
                                                         format_bytes(in.host_available_bytes), "): lower --host-cache"));
    return p;
}

std::string MemoryPlan::table() const {
    auto pct = [&](int64_t b) { return device_total_bytes > 0 ? 100.0 * double(b) / double(device_total_bytes) : 0.0; };
    std::string t;
    auto row = [&](const char* name, int64_t bytes, const std::string& note) {
        std::string line = absl::StrFormat("  %-14s %12s  %s", name, format_bytes(bytes), note);
        while (!line.empty() && line.back() == ' ') line.pop_back();
        absl::StrAppend(&t, t.empty() ? "" : "\n", line);
    };
    row("total", device_total_bytes, absl::StrCat(device_name, target == MemoryTarget::kHostRam ? " (MemTotal)" : ""));
    row("free before", device_free_bytes, target == MemoryTarget::kHostRam ? "MemAvailable, before loading" : "before loading");
    row("budget", budget_bytes,
        absl::StrFormat("min(%.2f × total, free): limited by %s", utilization,
                        budget_limited_by_free ? "free memory" : "--gpu-memory-utilization"));
    row("weights", weights_bytes, "");
    row("workspace", workspace.total(),
        absl::StrCat("largest step: ", token_budget, " tokens, max seq len ", max_seq_len, ", the lines below"));
    row("  activations", workspace.activations, "Model::reserve, f32");
    row("  logits", workspace.logits, "logit rows and their hidden rows");
    if (target == MemoryTarget::kCudaDevice) {
        row("  attention", workspace.attention, "decode split partials (no score buffer), counted twice");
        row("  sampler", workspace.sampler, "device sampler rows, counted twice");
        row("  scratch", workspace.backend_scratch, "GDN, MoE, ids and block tables, counted twice");
    } else {
        row("  scratch", workspace.backend_scratch, "largest op's scratch + logits copied to the host");
    }
    row("reserve", reserve_bytes, "runtime overhead");
    if (host_cache_bytes > 0) row("host cache", host_cache_bytes, "checkpoints in host RAM (--host-cache)");
    row("state slots", state_bytes(),
        absl::StrCat(state_slots(), " × ", format_bytes(state_slot_bytes), " (", max_running, " running + ", spare_slots,
                     " spare)"));
    row("KV pool", kv_bytes(),
        absl::StrFormat("%d × %s (%d tokens/block, %s; %d tokens = %.1f × max seq len)%s", kv_blocks,
                        format_bytes(kv_block_bytes), block_tokens, dtype_info(kv_type).name, kv_tokens(),
                        max_seq_len > 0 ? double(kv_tokens()) / max_seq_len : 0.0,
                        kv_sized_from_memory ? ", sized from the budget" : ""));
    row("planned", planned_bytes(), absl::StrFormat("%.1f%% of total", pct(planned_bytes())));
    row("free after", free_after_bytes(), "predicted");
    return t;
}

// --- measuring

absl::StatusOr<DeviceMemory> parse_meminfo(const std::string& text) {
    DeviceMemory m;
    m.name = "host RAM";
    int64_t total = -1, avail = -1;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
        int64_t* dst = nullptr;
        if (absl::ConsumePrefix(&line, "MemTotal:")) dst = &total;
        else if (absl::ConsumePrefix(&line, "MemAvailable:")) dst = &avail;
        if (!dst) continue;
        line = absl::StripAsciiWhitespace(line);
        absl::ConsumeSuffix(&line, "kB");
        line = absl::StripAsciiWhitespace(line);
        int64_t kb;
        if (!absl::SimpleAtoi(line, &kb) || kb < 0)
            return absl::InvalidArgumentError(absl::StrCat("/proc/meminfo: cannot read '", line, "'"));
        *dst = kb * 1024;
    }
    if (total < 0 || avail < 0)
        return absl::InvalidArgumentError("/proc/meminfo: MemTotal or MemAvailable missing");
    m.total_bytes = total;
    m.free_bytes = avail;
    return m;
}

absl::StatusOr<DeviceMemory> host_memory() {
    std::ifstream f("/proc/meminfo");
    if (!f) return absl::UnavailableError("cannot read /proc/meminfo");
    std::stringstream ss;
    ss << f.rdbuf();
    return parse_meminfo(ss.str());
}

absl::StatusOr<DeviceMemory> device_memory(MemoryTarget target) {
    if (target == MemoryTarget::kHostRam) return host_memory();
#ifdef DELTAGATE_HAVE_CUDA
    if (cuda::device_count() == 0) return absl::FailedPreconditionError("backend cuda: no CUDA device is visible");
    int64_t free = 0, total = 0;
    if (!cuda::mem_info(&free, &total))
        return absl::FailedPreconditionError("cuda: cannot query device memory (cudaMemGetInfo failed; no device?)");
    DeviceMemory m;
    m.total_bytes = total;
    m.free_bytes = free;
    m.name = cuda::device_name(cuda::current_device());
    return m;
#else
    return absl::FailedPreconditionError("backend cuda: this build of deltagate has no CUDA support (nvcc was not found)");
#endif
}

}  // namespace dg
