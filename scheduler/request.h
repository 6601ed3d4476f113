// What a client of the scheduler submits and what it gets back. Token ids only: tokenizing and chat
// rendering belong to the front. A gRPC worker maps Request/Event one to one onto its messages.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "scheduler/sampling.h"

namespace dg::sched {

using RequestId = uint64_t;
using Clock = std::chrono::steady_clock;

enum class FinishReason { kNone, kStop, kLength, kCancelled, kDeadline, kError };
const char* finish_reason_name(FinishReason r);

struct Usage {
    int32_t prompt_tokens = 0;
    int32_t cached_tokens_device = 0;  // prompt tokens resumed with state and KV all on the device
    int32_t cached_tokens_host = 0;    // prompt tokens resumed with state or KV blocks from host RAM
    int32_t prefill_tokens = 0;        // prompt tokens computed (over all children and re-admissions)
    int32_t recomputed_tokens = 0;     // generated tokens computed again after a preemption lost them
    int32_t completion_tokens = 0;     // over all children
    int32_t preemptions = 0;
    // Wall-clock phases from submit: queue (until first admission), restore (copying a cached state and
    // tail block into the sequence's slot at that admission; inside prefill), prefill (admission to the
    // first token), ttft (submit to the first token), decode (first token to the end).
    double queue_ms = 0, restore_ms = 0, prefill_ms = 0, ttft_ms = 0, decode_ms = 0;
    bool admitted = false;     // the request reached a slot (false: it ended while queued)
    bool first_token = false;  // it produced at least one token
};

struct Event {
    RequestId id = 0;
    int32_t index = 0;          // fork child (0 .. n-1)
    int32_t token = -1;         // -1: none (a cancel, deadline or error ends the child without one)
    FinishReason finish = FinishReason::kNone;  // this child ended with this event
    bool request_done = false;  // the request's last event: `usage` is final, the id is forgotten
    Usage usage;                // set when request_done
    absl::Status status;        // set when finish == kError
    // When the request asked for logprobs and `token` >= 0: log-softmax of the raw logits.
    float logprob = 0.f;
    std::vector<std::pair<int32_t, float>> top_logprobs;  // best first (top_logprobs of them)
};

struct Request {
    std::vector<int32_t> prompt;
    SamplingParams sampling;
    int32_t n = 1;                  // continuations forked from one prefill
    int32_t max_tokens = 16;        // per continuation
    std::vector<int32_t> stop_tokens;  // in addition to the model's EOS ids
    bool ignore_eos = false;
    int32_t priority = 0;           // higher first
    uint64_t cache_salt = 0;        // isolates prefix sharing between tenants
    // A conversation's id (0: none): while its session is live (StateCacheOptions::session_ttl after
    // its last request) its checkpoints are kept before one-off requests' (docs/scheduler.md).
    uint64_t session_id = 0;
    std::vector<int32_t> checkpoint_at;  // client hints: also checkpoint after these prompt positions
    // A migrated continuation (docs/reliability.md): the last `resumed_tokens` of `prompt` are this
    // continuation's own earlier output, generated elsewhere. They count as generated for the penalties
    // and the sampler's position (so a seeded stream continues exactly), not for max_tokens (the sender
    // lowers it). Requires n == 1; [0, prompt.size() - 1].
    int32_t resumed_tokens = 0;
    bool logprobs = false;          // report each sampled token's logprob
    int32_t top_logprobs = 0;       // and the n best (implies logprobs); [0, kMaxTopLogprobs]
    std::optional<Clock::time_point> deadline;
    // Called from inside EngineLoop::step()/cancel(); must not call back into the loop.
    std::function<void(const Event&)> on_event;
};

}  // namespace dg::sched
