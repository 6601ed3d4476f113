// The worker's iteration-level loop over one Model: continuous batching with chunked prefill, prefix
// reuse through the KV pool and the state cache, fork for n > 1, preemption that keeps the preempted
// sequence's state as a checkpoint, cancellation and deadlines. Design: docs/scheduler.md.
//
// Threading: not thread-safe. One thread owns the loop and calls step(); a server posts submit/cancel
// to that thread (e.g. through a queue drained between steps) and forwards events to its streams.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model.h"
#include "scheduler/kv_block_pool.h"
#include "scheduler/prefix_hash.h"
#include "scheduler/prefix_index.h"
#include "scheduler/request.h"
#include "scheduler/sampling.h"
#include "scheduler/state_cache.h"
#include "scheduler/state_slot_pool.h"

namespace dg::sched {

struct CacheOptions {
    DType kv_type = DType::F16;
    int32_t block_tokens = 16;
    int32_t n_blocks = 1024;        // KV blocks per attention layer
};

struct SchedulerOptions {
    int32_t max_running = 8;        // sequences in the batch = device state slots for sequences
    int32_t spare_slots = 8;        // device state slots for tier-1 checkpoints
    int64_t host_cache_bytes = int64_t(256) << 20;  // host RAM for tier-2 checkpoints and spilled KV blocks
    bool spill_kv_to_host = true;   // false: KV blocks the pool evicts are dropped (and recomputed)
    CheckpointPolicy checkpoint_policy = CheckpointPolicy::kValue;  // kLru: plain recency (comparisons)
    int64_t session_ttl_ms = 600000;  // a session's checkpoints count as live this long after a request
    int32_t token_budget = 256;     // tokens per step (decodes first, then prefill chunks)
    int32_t checkpoint_every = 0;   // also checkpoint every N tokens of a prefill (0: off)
    int32_t max_seq_len = 0;        // tokens per sequence (0: the model's context)
    int32_t max_n = 16;             // largest n per request
    bool prefix_cache = true;       // false: every request starts cold (benchmarks)
};

// Load and cache digest for routing (published by the worker to the fronts).
struct LoadDigest {
    int32_t running = 0, waiting = 0;
    int32_t kv_blocks_total = 0, kv_blocks_referenced = 0, kv_blocks_cached = 0;
    int32_t seq_slots_total = 0, seq_slots_used = 0;
    int32_t checkpoints_device = 0, checkpoints_host = 0;
    int32_t kv_blocks_host = 0;     // KV blocks spilled to host RAM
    int64_t host_bytes = 0, host_budget = 0;
    struct Entry {
        uint64_t key;   // prefix_hash.h checkpoint key
        int32_t pos;
        Tier tier;
    };
    std::vector<Entry> checkpoints;
};

class EngineLoop {
public:
    // Builds the model with caches sized from the options (state slots = max_running + spare_slots).
    static absl::StatusOr<std::unique_ptr<EngineLoop>> create(std::unique_ptr<ModelWeights> weights, BackendKind backend,
                                                              const CacheOptions& cache, const SchedulerOptions& opt);

    // Validates and queues. InvalidArgument for bad input (empty or unknown token ids, prompt longer
    // than the context, bad sampling, n, max_tokens or hints); ResourceExhausted when the request could
    // never fit the KV pool or the slots even with the worker idle.
    absl::StatusOr<RequestId> submit(Request r);
    // Ends every continuation of the request now, freeing its blocks and slots (no checkpoint).
    absl::Status cancel(RequestId id);
    // Ends one continuation (fork child `index`) of a running request, as cancel() does for all of them;
    // the others go on. NotFound when that continuation already ended; FailedPrecondition before the
    // fork (continuations other than 0 exist only after the first token).
    absl::Status cancel_continuation(RequestId id, int32_t index);
    // Preempts the request's running continuations as memory pressure would (tests, operators).
    absl::Status preempt(RequestId id);

    // One iteration: expire deadlines, admit, plan, run one forward pass, sample, emit events.
    // Returns false when there was nothing to run.
    absl::StatusOr<bool> step();
    absl::Status run_until_idle();
    bool idle() const { return running_.empty() && waiting_.empty(); }
    int32_t n_running() const { return int32_t(running_.size()); }
    int32_t n_waiting() const { return int32_t(waiting_.size()); }  // sequences (fork children count)
    int32_t n_requests() const { return int32_t(reqs_.size()); }

    LoadDigest digest() const;
    // Proves that every block, slot and checkpoint reference is accounted for (invariants.cpp).
    absl::Status check_invariants() const;

    Model& model() { return *model_; }
    const KvBlockPool& kv_pool() const { return *pool_; }
    const StateCache& state_cache() const { return *cache_; }
    const StateSlotPool& slots() const { return *slots_; }
    const SchedulerOptions& options() const { return opt_; }
    int32_t max_seq_len() const { return max_seq_len_; }

private:
    using SeqId = int64_t;
    struct Seq {
        SeqId id = 0;
        RequestId req = 0;
        int32_t index = 0;              // fork child
        std::vector<int32_t> tokens;    // prompt + generated; [pos, size) still to be computed
        int32_t prompt_len = 0;
        int32_t gen_start = 0;          // where this continuation's output starts (< prompt_len when resumed)
        int32_t pos = 0;                // tokens whose K/V and state are computed
        int32_t generated = 0;
        int32_t computed_hwm = 0;       // highest pos ever reached (counts recomputation)
        uint64_t last_checkpoint = 0;   // key of its latest checkpoint: the next one supersedes it
        uint64_t resumed_from = 0;      // key of the checkpoint its last admission restored, until extended
        uint64_t awaited = 0;           // waiting: the checkpoint it will resume from (preemption, fork)
        int32_t slot = -1;
        std::vector<int32_t> blocks;    // block table; each entry holds one ref
        PrefixHasher hasher{0, 1};      // over tokens[0, pos)
        Sampler sampler;
        bool running = false;
        bool fork_pending = false;      // n > 1 and the first token is not sampled yet
        bool admitted_before = false;
        int32_t priority = 0;
        int64_t arrival = 0;
    };
    struct ReqState {
        Request req;
        std::vector<SeqId> seqs;
        int32_t live = 0;               // children not finished
        Usage usage;
        Clock::time_point submitted, admitted, first_token;
        bool has_admitted = false, has_first_token = false;
    };
    struct Work {
        SeqId id;
        int32_t len;
    };

    EngineLoop() = default;

    void expire_deadlines();
    enum class AdmitResult { kAdmitted, kBlocked, kDropped };
    void admit();
    AdmitResult try_admit(SeqId id);
    std::vector<Work> plan();
    bool ensure_blocks(SeqId id, int32_t upto, std::vector<Work>* work, int32_t* budget);
    std::optional<int32_t> alloc_block();
    SeqId pick_victim() const;
    void preempt_seq(SeqId id, std::vector<Work>* work, int32_t* budget);
    int32_t next_cut(const Seq& s) const;

    void advance(Seq& s, int32_t len);  // pos += len, publishing blocks that became full
    // `path_end`: the end of the prompt, of a generation or a preemption point: positions only this
    // sequence's continuation reaches (a later checkpoint of it supersedes them), unlike periodic and
    // hinted positions inside the prompt, which other requests share.
    void checkpoint(Seq& s, bool path_end = true);
    // Tells the cache which checkpoint a waiting sequence will resume from (0: none), so that it is kept.
    void set_awaited(Seq& s, uint64_t key);
    // Moves the match's host blocks (and a host tail) back into fresh device blocks of `s`.
    void upload_match(Seq& s, const PrefixMatch& m, const std::vector<uint8_t>& host_tail, int32_t device_tail);
    // drawn[0]: this sequence's token (sampled in the step); drawn[1..]: a pending fork's children's.
    void on_token(SeqId id, std::span<const SampledToken> drawn);
    void fork(SeqId parent, std::span<const SampledToken> drawn);
    bool stop_token(const Seq& s, int32_t token) const;
    void release(Seq& s);
    // `with_token`: the event carrying the last sampled token (and its logprobs), if any.
    void finish(SeqId id, FinishReason why, const absl::Status& st = absl::OkStatus(), const Event* with_token = nullptr);
    void end_request(RequestId id, FinishReason why, const absl::Status& st);
    void emit(ReqState& r, Event e);

    SchedulerOptions opt_;
    int32_t max_seq_len_ = 0;
    std::unique_ptr<Model> model_;
    std::unique_ptr<KvBlockPool> pool_;
    std::unique_ptr<StateSlotPool> slots_;
    std::unique_ptr<StateCache> cache_;
    std::vector<int32_t> eos_;

    RequestId next_req_ = 1;
    SeqId next_seq_ = 1;
    int64_t next_arrival_ = 0;
    std::map<RequestId, ReqState> reqs_;
    std::map<SeqId, Seq> seqs_;
    std::vector<SeqId> running_, waiting_;
};

}  // namespace dg::sched
