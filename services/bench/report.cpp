#include "services/bench/report.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace dg::bench {

using json = nlohmann::json;

namespace {

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json summary_json(const Summary& s) {
    return {{"n", s.n}, {"mean", num(s.mean)}, {"min", num(s.min)}, {"p50", num(s.p50)},
            {"p90", num(s.p90)}, {"p99", num(s.p99)}, {"max", num(s.max)}};
}

std::string csv_num(double v) { return std::isfinite(v) ? absl::StrFormat("%.6g", v) : ""; }

}  // namespace

json cell_json(const CellReport& c) {
    const Cell& cell = *c.cell;
    const CellMetrics& m = c.m;
    json j = {{"workload", cell.workload},
              {"context", cell.context},
              {"concurrency", cell.concurrency},
              {"output", cell.output},
              {"cache", cell.cache ? "on" : "off"},
              {"requests", m.requests},
              {"ok", m.ok},
              {"failed", m.failed},
              {"errors", m.errors},
              {"wall_s", m.wall_s},
              {"req_per_s", m.req_per_s},
              {"output_tok_per_s", m.output_tok_per_s},
              {"total_tok_per_s", m.total_tok_per_s},
              {"ttft_ms", summary_json(m.ttft_ms)},
              {"itl_ms", summary_json(m.itl_ms)},
              {"tpot_ms", summary_json(m.tpot_ms)},
              {"e2e_ms", summary_json(m.e2e_ms)},
              {"prefill_tok_per_s_per_request", summary_json(m.prefill_tok_per_s)},
              {"decode_tok_per_s_per_request", summary_json(m.decode_tok_per_s)},
              {"prompt_tokens", m.prompt_tokens},
              {"server_prompt_tokens", m.usage_prompt_tokens},
              {"output_tokens", m.output_tokens},
              {"cached_tokens", m.cached_fraction >= 0 ? json(m.cached_tokens) : json(nullptr)},
              {"cached_fraction", m.cached_fraction >= 0 ? json(m.cached_fraction) : json(nullptr)},
              {"cached_fraction_by_tier",
               m.cached_device_fraction >= 0
                   ? json{{"device", m.cached_device_fraction}, {"host", m.cached_host_fraction}}
                   : json(nullptr)},
              {"goodput", {{"good", m.good}, {"req_per_s", m.goodput_req_per_s}, {"fraction", m.good_fraction}}}};
    if (cell.workload == "agent") j["turn"] = cell.turn;
    if (cell.workload == "fanout") j["suffix_tokens"] = cell.jobs.empty() || cell.jobs[0].suffixes.empty()
                                                            ? 0 : int(cell.jobs[0].suffixes[0].size());
    if (cell.workload == "replay") j["rate"] = cell.rate > 0 ? json(cell.rate) : json("trace");
    if (!m.first_error.empty()) j["first_error"] = m.first_error;
    return j;
}

json results_json(const RunInfo& run, const std::vector<CellReport>& cells) {
    json out = {{"tool", "deltagate bench"},
                {"version", run.version},
                {"date_utc", run.date_utc},
                {"command", run.command},
                {"label", run.label},
                {"workload", run.workload},
                {"seed", run.seed},
                {"server", run.server.server},
                {"model", run.server.model},
                {"server_max_context", run.server.max_context},
                {"prompt_mode", run.server.prompt_mode},
                {"slo", {{"ttft_ms", run.slo.ttft_ms > 0 ? json(run.slo.ttft_ms) : json(nullptr)},
                         {"itl_ms", run.slo.itl_ms > 0 ? json(run.slo.itl_ms) : json(nullptr)}}}};
    if (run.workload == "fanout") out["fanout_method"] = run.fanout_method;
    json arr = json::array();
    for (const CellReport& c : cells) arr.push_back(cell_json(c));
    out["cells"] = std::move(arr);
    return out;
}

std::string results_csv(const std::vector<CellReport>& cells) {
    std::vector<std::string> head = {"workload", "context", "concurrency", "output", "turn", "cache", "rate",
                                     "requests", "ok", "failed", "errors", "wall_s", "req_per_s",
                                     "output_tok_per_s", "total_tok_per_s"};
    for (const char* k : {"ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"})
        for (const char* p : {"mean", "p50", "p90", "p99"}) head.push_back(absl::StrCat(k, "_", p));
    for (const char* k : {"prefill_tok_per_s_p50", "decode_tok_per_s_p50", "prompt_tokens", "output_tokens",
                          "cached_fraction", "cached_device_fraction", "cached_host_fraction", "good",
                          "goodput_req_per_s"})
        head.push_back(k);
    std::string out = absl::StrJoin(head, ",") + "\n";
    for (const CellReport& c : cells) {
        const Cell& cell = *c.cell;
        const CellMetrics& m = c.m;
        std::vector<std::string> errs;
        for (const auto& [k, v] : m.errors) errs.push_back(absl::StrCat(k, "=", v));
        std::vector<std::string> row = {cell.workload, absl::StrCat(cell.context), absl::StrCat(cell.concurrency),
                                        absl::StrCat(cell.output), absl::StrCat(cell.turn), cell.cache ? "on" : "off",
                                        cell.rate > 0 ? csv_num(cell.rate) : "", absl::StrCat(m.requests),
                                        absl::StrCat(m.ok), absl::StrCat(m.failed), absl::StrJoin(errs, ";"),
                                        csv_num(m.wall_s), csv_num(m.req_per_s), csv_num(m.output_tok_per_s),
                                        csv_num(m.total_tok_per_s)};
        for (const Summary* s : {&m.ttft_ms, &m.itl_ms, &m.tpot_ms, &m.e2e_ms})
            for (double v : {s->mean, s->p50, s->p90, s->p99}) row.push_back(csv_num(v));
        row.push_back(csv_num(m.prefill_tok_per_s.p50));
        row.push_back(csv_num(m.decode_tok_per_s.p50));
        row.push_back(absl::StrCat(m.prompt_tokens));
        row.push_back(absl::StrCat(m.output_tokens));
        for (double f : {m.cached_fraction, m.cached_device_fraction, m.cached_host_fraction})
            row.push_back(f >= 0 ? csv_num(f) : "");
        row.push_back(absl::StrCat(m.good));
        row.push_back(csv_num(m.goodput_req_per_s));
        out += absl::StrJoin(row, ",") + "\n";
    }
    return out;
}

namespace {

// A grid: rows keyed by `row`, columns by `col`, cells formatted by `fmt`.
template <typename RowKey, typename ColKey>
std::string grid(const std::string& title, const std::string& corner, const std::vector<CellReport>& cells,
                 RowKey row, ColKey col, const std::function<std::string(const CellReport&)>& fmt,
                 const std::function<std::string(int)>& col_name) {
    std::set<int> rows, cols;
    std::map<std::pair<int, int>, std::string> v;
    for (const CellReport& c : cells) {
        rows.insert(row(c));
        cols.insert(col(c));
        v[{row(c), col(c)}] = fmt(c);
    }
    std::string out = absl::StrCat("\n", title, "\n", absl::StrFormat("%-10s", corner));
    for (int c : cols) absl::StrAppend(&out, absl::StrFormat(" %12s", col_name(c)));
    out += "\n";
    for (int r : rows) {
        absl::StrAppend(&out, absl::StrFormat("%-10d", r));
        for (int c : cols) {
            auto it = v.find({r, c});
            absl::StrAppend(&out, absl::StrFormat(" %12s", it == v.end() ? "" : it->second));
        }
        out += "\n";
    }
    return out;
}

std::string f1(double v) { return std::isfinite(v) ? absl::StrFormat("%.1f", v) : "-"; }
std::string f0(double v) { return std::isfinite(v) ? absl::StrFormat("%.0f", v) : "-"; }
std::string pct(double v) { return v >= 0 ? absl::StrFormat("%.0f%%", 100 * v) : "-"; }

}  // namespace

std::string summary_tables(const RunInfo& run, const std::vector<CellReport>& cells) {
    std::string out = absl::StrCat(run.server.server, ", model ", run.server.model, ", prompts as ",
                                   run.server.prompt_mode, ", seed ", run.seed, "\n");
    auto ctx = [](const CellReport& c) { return c.cell->context; };
    auto conc = [](const CellReport& c) { return c.cell->concurrency; };
    auto chats = [](int c) { return absl::StrCat(c, c == 1 ? " chat" : " chats"); };
    if (run.workload == "sweep") {
        std::set<int> outputs;
        for (const CellReport& c : cells) outputs.insert(c.cell->output);
        for (int o : outputs) {
            std::vector<CellReport> sub;
            for (const CellReport& c : cells)
                if (c.cell->output == o) sub.push_back(c);
            const std::string tail = absl::StrCat(" (output ", o, " tokens; rows = context tokens)");
            out += grid("Generation speed, tok/s, all chats together" + tail, "context", sub, ctx, conc,
                        [](const CellReport& c) { return f1(c.m.output_tok_per_s); }, chats);
            out += grid("Generation speed per chat, tok/s (median request)" + tail, "context", sub, ctx, conc,
                        [](const CellReport& c) { return f1(c.m.decode_tok_per_s.p50); }, chats);
            out += grid("Prompt processing, tok/s (median request: uncached prompt / TTFT)" + tail, "context", sub,
                        ctx, conc, [](const CellReport& c) { return f0(c.m.prefill_tok_per_s.p50); }, chats);
            out += grid("Time to first token, ms (p50 / p99)" + tail, "context", sub, ctx, conc,
                        [](const CellReport& c) { return f0(c.m.ttft_ms.p50) + "/" + f0(c.m.ttft_ms.p99); }, chats);
        }
    } else if (run.workload == "agent") {
        auto turn = [](const CellReport& c) { return c.cell->turn; };
        auto cache = [](const CellReport& c) { return c.cell->cache ? 1 : 0; };
        auto cname = [](int c) { return std::string(c ? "cache on" : "cache off"); };
        out += grid("Agent: time to first token by turn, ms (p50 over sessions)", "turn", cells, turn, cache,
                    [](const CellReport& c) { return f0(c.m.ttft_ms.p50); }, cname);
        out += grid("Agent: prompt tokens (mean) by turn", "turn", cells, turn, cache,
                    [](const CellReport& c) { return absl::StrCat(c.cell->context); }, cname);
        out += grid("Agent: cached fraction of the prompt (server usage)", "turn", cells, turn, cache,
                    [](const CellReport& c) { return pct(c.m.cached_fraction); }, cname);
    } else if (run.workload == "fanout") {
        auto width = [](int w) { return absl::StrCat("width ", w); };
        out += grid("Fan-out: time to first token, ms (p50 over continuations; rows = shared context)", "context",
                    cells, ctx, conc, [](const CellReport& c) { return f0(c.m.ttft_ms.p50); }, width);
        out += grid("Fan-out: generation, tok/s, all continuations together", "context", cells, ctx, conc,
                    [](const CellReport& c) { return f1(c.m.output_tok_per_s); }, width);
        out += grid("Fan-out: cached fraction of the prompt tokens (server usage)", "context", cells, ctx, conc,
                    [](const CellReport& c) { return pct(c.m.cached_fraction); }, width);
    } else {
        out += "\nReplay (open loop)\n";
        out += absl::StrFormat("%-10s %8s %8s %10s %10s %10s %10s %8s\n", "rate", "requests", "failed", "ttft p50",
                               "ttft p99", "itl p50", "tok/s", "goodput");
        for (const CellReport& c : cells)
            out += absl::StrFormat("%-10s %8d %8d %10s %10s %10s %10s %8s\n",
                                   c.cell->rate > 0 ? f1(c.cell->rate) : "trace", c.m.requests, c.m.failed,
                                   f0(c.m.ttft_ms.p50), f0(c.m.ttft_ms.p99), f1(c.m.itl_ms.p50),
                                   f1(c.m.output_tok_per_s), pct(c.m.good_fraction));
    }
    int requests = 0, failed = 0;
    std::map<std::string, int> errors;
    for (const CellReport& c : cells) {
        requests += c.m.requests;
        failed += c.m.failed;
        for (const auto& [k, v] : c.m.errors) errors[k] += v;
    }
    std::vector<std::string> e;
    for (const auto& [k, v] : errors) e.push_back(absl::StrCat(k, " ", v));
    absl::StrAppend(&out, "\n", requests, " requests, ", requests - failed, " ok, ", failed, " failed",
                    e.empty() ? "" : absl::StrCat(" (", absl::StrJoin(e, ", "), ")"), "\n");
    return out;
}

}  // namespace dg::bench
