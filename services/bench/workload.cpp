#include "services/bench/workload.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "scheduler/prefix_hash.h"

namespace dg::bench {
namespace {

// splitmix64: mixes (seed, stream) into independent generator seeds.
uint64_t mix(uint64_t x) { return sched::splitmix64(x); }
uint64_t key(uint64_t seed, std::initializer_list<uint64_t> parts) {
    uint64_t k = mix(seed);
    for (uint64_t p : parts) k = mix(k ^ p);
    return k;
}
// Tags keep the workloads' streams apart.
enum : uint64_t { kSweep = 1, kAgentSystem, kAgentUser, kAgentReply, kAgentTool, kAgentSize, kFanPrefix, kFanSuffix,
                  kReplayPrompt, kReplayArrival };

// A uniform double in [0, 1) from mt19937_64 (std distributions differ between standard libraries).
double unit(std::mt19937_64& g) { return double(g() >> 11) * 0x1.0p-53; }

}  // namespace

TokenRange token_range(int vocab) {
    TokenRange r;
    r.hi = std::min(vocab, 150000);
    r.lo = std::min(1000, vocab / 8);
    if (r.hi <= r.lo) r.hi = r.lo + 1;
    return r;
}

std::vector<int32_t> random_ids(uint64_t seed, uint64_t stream, int n, TokenRange r) {
    std::mt19937_64 g(key(seed, {stream}));
    std::vector<int32_t> out(size_t(std::max(0, n)));
    const uint64_t span = uint64_t(r.hi - r.lo);
    for (auto& id : out) id = r.lo + int32_t(g() % span);
    return out;
}

std::vector<Cell> make_sweep(const SweepSpec& s, uint64_t seed, TokenRange r) {
    std::vector<Cell> cells;
    uint64_t n = 0;
    for (int ctx : s.contexts)
        for (int out : s.outputs)
            for (int c : s.concurrency) {
                Cell cell;
                cell.workload = "sweep";
                cell.context = ctx;
                cell.concurrency = c;
                cell.output = out;
                const int requests = s.requests > 0 ? s.requests : 2 * c;
                for (int i = 0; i < requests; ++i) {
                    Job j;
                    j.prompt = random_ids(seed, key(kSweep, {uint64_t(ctx), uint64_t(out), uint64_t(c), uint64_t(i)}), ctx, r);
                    j.max_tokens = out;
                    cell.jobs.push_back(std::move(j));
                }
                cells.push_back(std::move(cell));
                ++n;
            }
    return cells;
}

std::vector<Cell> make_agent(const AgentSpec& s, uint64_t seed, TokenRange r) {
    // Prompts first, shared by the cache-on and cache-off runs.
    std::vector<std::vector<std::vector<int32_t>>> prompts(size_t(s.sessions));  // [session][turn]
    const std::vector<int32_t> system = random_ids(seed, kAgentSystem, s.system_tokens, r);
    for (int si = 0; si < s.sessions; ++si) {
        std::vector<int32_t> history = system;
        auto user = random_ids(seed, key(kAgentUser, {uint64_t(si)}), s.user_tokens, r);
        history.insert(history.end(), user.begin(), user.end());
        std::mt19937_64 sizes(key(seed, {kAgentSize, uint64_t(si)}));
        for (int t = 0; t < s.turns; ++t) {
            if (t > 0) {
                // The previous turn's reply (a seeded stand-in of the requested length), then a tool result.
                auto reply = random_ids(seed, key(kAgentReply, {uint64_t(si), uint64_t(t)}), s.output, r);
                const int tool_n = s.tool_min + int(unit(sizes) * double(s.tool_max - s.tool_min + 1));
                auto tool = random_ids(seed, key(kAgentTool, {uint64_t(si), uint64_t(t)}), std::min(tool_n, s.tool_max), r);
                history.insert(history.end(), reply.begin(), reply.end());
                history.insert(history.end(), tool.begin(), tool.end());
            }
            prompts[size_t(si)].push_back(history);
        }
    }
    std::vector<Cell> cells;
    for (bool cache : s.cache)
        for (int t = 0; t < s.turns; ++t) {
            Cell cell;
            cell.workload = "agent";
            cell.concurrency = s.sessions;
            cell.output = s.output;
            cell.turn = t + 1;
            cell.cache = cache;
            int64_t total = 0;
            for (int si = 0; si < s.sessions; ++si) {
                Job j;
                j.prompt = prompts[size_t(si)][size_t(t)];
                j.max_tokens = s.output;
                j.session = si;
                j.session_id = absl::StrCat("bench-agent-", seed, "-", si, cache ? "" : "-nocache");
                total += int64_t(j.prompt.size());
                cell.jobs.push_back(std::move(j));
            }
            cell.context = s.sessions > 0 ? int(total / s.sessions) : 0;
            cells.push_back(std::move(cell));
        }
    return cells;
}

std::vector<Cell> make_fanout(const FanoutSpec& s, uint64_t seed, TokenRange r) {
    std::vector<Cell> cells;
    for (int ctx : s.contexts)
        for (int w : s.widths) {
            Cell cell;
            cell.workload = "fanout";
            cell.context = ctx;
            cell.concurrency = w;
            cell.output = s.output;
            for (int b = 0; b < s.requests; ++b) {
                Job j;
                j.prompt = random_ids(seed, key(kFanPrefix, {uint64_t(ctx), uint64_t(w), uint64_t(b)}), ctx, r);
                for (int i = 0; i < w; ++i)
                    j.suffixes.push_back(random_ids(
                        seed, key(kFanSuffix, {uint64_t(ctx), uint64_t(w), uint64_t(b), uint64_t(i)}), s.suffix_tokens, r));
                j.max_tokens = s.output;
                cell.jobs.push_back(std::move(j));
            }
            cells.push_back(std::move(cell));
        }
    return cells;
}

absl::StatusOr<std::vector<Cell>> make_replay(const ReplaySpec& s, uint64_t seed, TokenRange r) {
    std::vector<Cell> cells;
    if (!s.trace.empty()) {
        std::ifstream in(s.trace);
        if (!in) return absl::NotFoundError(absl::StrCat("--trace ", s.trace, ": cannot read it"));
        Cell cell;
        cell.workload = "replay";
        cell.concurrency = s.max_inflight;
        std::string line;
        int lineno = 0;
        int64_t ctx_total = 0, out_max = 0;
        while (std::getline(in, line)) {
            ++lineno;
            if (line.find_first_not_of(" \t\r") == std::string::npos || line[0] == '#') continue;
            auto j = nlohmann::json::parse(line, nullptr, false);
            auto bad = [&](const std::string& why) {
                return absl::InvalidArgumentError(absl::StrCat(s.trace, ":", lineno, ": ", why));
            };
            if (!j.is_object()) return bad("not a JSON object");
            if (!j.contains("arrival_s") || !j["arrival_s"].is_number() || j["arrival_s"].get<double>() < 0)
                return bad("needs \"arrival_s\" >= 0 (seconds after the start)");
            if (!j.contains("output_tokens") || !j["output_tokens"].is_number_integer() || j["output_tokens"].get<int>() < 1)
                return bad("needs \"output_tokens\" >= 1");
            Job job;
            job.arrival_s = j["arrival_s"].get<double>();
            job.max_tokens = j["output_tokens"].get<int>();
            if (j.contains("prompt_ids") && j["prompt_ids"].is_array()) {
                for (const auto& id : j["prompt_ids"]) {
                    if (!id.is_number_integer()) return bad("\"prompt_ids\" must be integers");
                    job.prompt.push_back(id.get<int32_t>());
                }
            } else if (j.contains("prompt_tokens") && j["prompt_tokens"].is_number_integer() &&
                       j["prompt_tokens"].get<int>() >= 1) {
                job.prompt = random_ids(seed, key(kReplayPrompt, {uint64_t(lineno)}), j["prompt_tokens"].get<int>(), r);
            } else {
                return bad("needs \"prompt_tokens\" >= 1 or \"prompt_ids\"");
            }
            if (job.prompt.empty()) return bad("empty prompt");
            ctx_total += int64_t(job.prompt.size());
            out_max = std::max<int64_t>(out_max, job.max_tokens);
            cell.jobs.push_back(std::move(job));
        }
        if (cell.jobs.empty()) return absl::InvalidArgumentError(absl::StrCat("--trace ", s.trace, ": no requests"));
        std::stable_sort(cell.jobs.begin(), cell.jobs.end(),
                         [](const Job& a, const Job& b) { return a.arrival_s < b.arrival_s; });
        cell.context = int(ctx_total / int64_t(cell.jobs.size()));
        cell.output = int(out_max);
        cells.push_back(std::move(cell));
        return cells;
    }
    for (double rate : s.rates) {
        if (!(rate > 0)) return absl::InvalidArgumentError("--rate: each rate must be > 0 requests/s");
        Cell cell;
        cell.workload = "replay";
        cell.context = s.context;
        cell.output = s.output;
        cell.rate = rate;
        cell.concurrency = s.max_inflight;
        std::mt19937_64 g(key(seed, {kReplayArrival, uint64_t(std::llround(rate * 1000))}));
        double t = 0;
        for (int i = 0; i < s.requests; ++i) {
            Job j;
            j.arrival_s = t;
            j.prompt = random_ids(seed, key(kReplayPrompt, {uint64_t(std::llround(rate * 1000)), uint64_t(i)}), s.context, r);
            j.max_tokens = s.output;
            cell.jobs.push_back(std::move(j));
            t += -std::log(1.0 - unit(g)) / rate;  // exponential gaps: Poisson arrivals
        }
        cells.push_back(std::move(cell));
    }
    return cells;
}

}  // namespace dg::bench
