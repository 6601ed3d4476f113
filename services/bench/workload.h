// The benchmark's workloads, generated from a seed so two servers get the same requests: the same token
// ids in the same order, whatever either server answers (agent histories use a seeded stand-in for the
// assistant's reply, not the reply itself, so a turn's prompt never depends on what a server generated).
//
//   sweep:  context × concurrency × output; each cell `requests` distinct random prompts of exactly
//           `context` tokens, kept `concurrency` in flight (closed loop).
//   agent:  `sessions` conversations of `turns` turns run side by side; turn 1 = a system prompt with tool
//           definitions (the same for every session, as one agent's) + a user message; each later turn
//           appends the previous reply and a tool result of a size drawn from [tool_min, tool_max]. One
//           cell per turn (and per cache setting when both are asked for).
//   fanout: one shared context and `width` short continuations (suffix tokens each), `requests` batches per
//           cell, each with its own context.
//   replay: open loop: requests sent at their arrival times, from a JSONL trace or Poisson arrivals at
//           `rate` requests/s.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dg::bench {

// One request, or one fan-out batch (prompt = shared prefix, suffixes = continuations).
struct Job {
    std::vector<int32_t> prompt;
    std::vector<std::vector<int32_t>> suffixes;
    int max_tokens = 0;
    std::string session_id;  // agent sessions
    int session = -1;        // agent: which session (its turns run in order)
    double arrival_s = 0;    // replay: seconds after the start
};

struct Cell {
    std::string workload;
    int context = 0;      // prompt tokens (sweep, replay), shared prefix (fanout); agent: mean prompt
    int concurrency = 0;  // parallel chats (sweep), sessions (agent), width (fanout), in-flight cap (replay)
    int output = 0;       // max tokens per request
    int turn = 0;         // agent: 1-based
    bool cache = true;    // false: every request asks the server not to reuse cached prefixes
    double rate = 0;      // replay: requests/s (0 = from a trace)
    std::vector<Job> jobs;
};

struct TokenRange {
    int32_t lo = 0, hi = 1;  // ids drawn from [lo, hi)
};
// Ordinary-token ids for a vocabulary: away from the low byte tokens and below Qwen's special tokens.
TokenRange token_range(int vocab_size);

struct SweepSpec {
    std::vector<int> contexts, concurrency, outputs;
    int requests = 0;  // per cell; 0 = 2 × concurrency
};
struct AgentSpec {
    int sessions = 2, turns = 8, system_tokens = 1024, user_tokens = 64, tool_min = 64, tool_max = 512, output = 32;
    std::vector<bool> cache = {true};
};
struct FanoutSpec {
    std::vector<int> contexts, widths;
    int suffix_tokens = 16, output = 16, requests = 2;
};
struct ReplaySpec {
    std::string trace;            // JSONL path; empty = Poisson
    std::vector<double> rates;    // requests/s (Poisson)
    int requests = 16, context = 256, output = 16, max_inflight = 64;
};

std::vector<Cell> make_sweep(const SweepSpec& s, uint64_t seed, TokenRange r);
std::vector<Cell> make_agent(const AgentSpec& s, uint64_t seed, TokenRange r);
std::vector<Cell> make_fanout(const FanoutSpec& s, uint64_t seed, TokenRange r);
// Trace lines: {"arrival_s": 0.5, "prompt_tokens": 512, "output_tokens": 64} or with "prompt_ids": [...]
// instead of prompt_tokens; blank lines and lines starting with '#' are skipped.
absl::StatusOr<std::vector<Cell>> make_replay(const ReplaySpec& s, uint64_t seed, TokenRange r);

// Deterministic ids: the same (seed, stream) gives the same n ids on every machine.
std::vector<int32_t> random_ids(uint64_t seed, uint64_t stream, int n, TokenRange r);

}  // namespace dg::bench
