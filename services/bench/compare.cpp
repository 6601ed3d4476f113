#include "services/bench/compare.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dg::bench {
namespace {

using json = nlohmann::json;

struct Run {
    std::string name;
    json j;
};

double at(const json& cell, const char* key, const char* sub = nullptr) {
    const json* p = &cell;
    if (!p->contains(key)) return NAN;
    p = &(*p)[key];
    if (sub) {
        if (!p->is_object() || !p->contains(sub)) return NAN;
        p = &(*p)[sub];
    }
    return p->is_number() ? p->get<double>() : NAN;
}

std::string fmt(double v, const char* f = "%.1f") { return std::isfinite(v) ? absl::StrFormat(f, v) : "-"; }

}  // namespace

absl::StatusOr<Comparison> compare_runs(const std::vector<std::string>& dirs) {
    std::vector<Run> runs;
    for (const std::string& d : dirs) {
        std::ifstream f(d + "/results.json");
        if (!f) return absl::NotFoundError(absl::StrCat("--compare: no results.json in ", d));
        json j = json::parse(f, nullptr, false);
        if (!j.is_object() || !j.contains("cells") || !j.contains("workload"))
            return absl::InvalidArgumentError(absl::StrCat("--compare: ", d, "/results.json is not a deltagate bench result"));
        std::string name = j.value("label", "");
        if (name.empty()) name = std::filesystem::path(d).filename().string();
        runs.push_back({name, std::move(j)});
    }
    if (runs.size() < 2) return absl::InvalidArgumentError("--compare needs at least two result folders (DIR,DIR,...)");
    const std::string workload = runs[0].j["workload"];
    for (const Run& r : runs)
        if (r.j["workload"] != workload)
            return absl::InvalidArgumentError(absl::StrCat("--compare: ", r.name, " is a ", r.j["workload"].get<std::string>(),
                                                           " run, ", runs[0].name, " a ", workload, " run"));
    Comparison out;
    for (const Run& r : runs)
        absl::StrAppend(&out.tables, r.name, ": ", r.j.value("server", ""), ", model ", r.j.value("model", ""), ", ",
                        r.j.value("date_utc", ""), "\n");
    if (workload == "agent") {
        // Columns: run × cache setting; rows: turns; cells: TTFT p50 (cached fraction).
        std::vector<std::pair<std::string, std::map<int, const json*>>> cols;
        std::set<int> turns;
        for (const Run& r : runs)
            for (const char* cache : {"on", "off"}) {
                std::map<int, const json*> by_turn;
                for (const json& c : r.j["cells"])
                    if (c.value("cache", "on") == cache && c.contains("turn")) {
                        by_turn[c["turn"].get<int>()] = &c;
                        turns.insert(c["turn"].get<int>());
                    }
                if (!by_turn.empty()) cols.push_back({absl::StrCat(r.name, " cache ", cache), std::move(by_turn)});
            }
        out.tables += "\nAgent: time to first token by turn, ms (p50 over sessions; cached fraction of the prompt)\n";
        int w = 12;
        for (const auto& [name, _] : cols) w = std::max(w, int(name.size()));
        out.tables += absl::StrFormat("%-6s", "turn");
        for (const auto& [name, _] : cols) out.tables += absl::StrFormat(" %*s", w, name);
        out.tables += "\n";
        for (int t : turns) {
            out.tables += absl::StrFormat("%-6d", t);
            for (const auto& [name, by_turn] : cols) {
                auto it = by_turn.find(t);
                std::string v = "";
                if (it != by_turn.end()) {
                    const double cf = at(*it->second, "cached_fraction");
                    v = absl::StrCat(fmt(at(*it->second, "ttft_ms", "p50"), "%.0f"),
                                     std::isfinite(cf) ? absl::StrFormat(" (%.0f%%)", 100 * cf) : "");
                }
                out.tables += absl::StrFormat(" %*s", w, v);
            }
            out.tables += "\n";
        }
        Plot p{"compare_ttft_per_turn.png", "Agent sessions: time to first token per turn (p50)", "turn", "ms", false, {}};
        for (const auto& [name, by_turn] : cols) {
            Series s{name, {}};
            for (const auto& [t, c] : by_turn)
                if (std::isfinite(at(*c, "ttft_ms", "p50"))) s.points.push_back({double(t), at(*c, "ttft_ms", "p50")});
            p.series.push_back(std::move(s));
        }
        out.plots.push_back(std::move(p));
    } else if (workload == "sweep") {
        out.tables += "\nSweep: per chat decode tok/s | prefill tok/s | TTFT p50 ms (median request), by run\n";
        int w = 20;
        for (const Run& r : runs) w = std::max(w, int(r.name.size()));
        out.tables += absl::StrFormat("%-8s %-6s %-7s", "context", "chats", "output");
        for (const Run& r : runs) out.tables += absl::StrFormat(" %*s", w, r.name);
        out.tables += "\n";
        std::map<std::tuple<int, int, int>, std::vector<const json*>> rows;
        for (size_t i = 0; i < runs.size(); ++i)
            for (const json& c : runs[i].j["cells"]) {
                auto& v = rows[{c.value("context", 0), c.value("concurrency", 0), c.value("output", 0)}];
                v.resize(runs.size(), nullptr);
                v[i] = &c;
            }
        for (const auto& [k, v] : rows) {
            out.tables += absl::StrFormat("%-8d %-6d %-7d", std::get<0>(k), std::get<1>(k), std::get<2>(k));
            for (const json* c : v)
                out.tables += absl::StrFormat(
                    " %*s", w, c ? absl::StrCat(fmt(at(*c, "decode_tok_per_s_per_request", "p50")), " | ",
                                              fmt(at(*c, "prefill_tok_per_s_per_request", "p50"), "%.0f"), " | ",
                                              fmt(at(*c, "ttft_ms", "p50"), "%.0f"))
                               : "");
            out.tables += "\n";
        }
        Plot d{"compare_decode_vs_concurrency.png", "Decode tok/s per chat (median request)", "parallel chats",
               "tokens/s", true, {}};
        Plot t{"compare_ttft_vs_concurrency.png", "Time to first token, p50", "parallel chats", "ms", true, {}};
        for (const Run& r : runs) {
            std::map<int, Series> dm, tm;
            for (const json& c : r.j["cells"]) {
                const int ctx = c.value("context", 0);
                const double x = c.value("concurrency", 0);
                dm[ctx].name = tm[ctx].name = absl::StrCat(r.name, " context ", ctx);
                if (std::isfinite(at(c, "decode_tok_per_s_per_request", "p50")))
                    dm[ctx].points.push_back({x, at(c, "decode_tok_per_s_per_request", "p50")});
                if (std::isfinite(at(c, "ttft_ms", "p50"))) tm[ctx].points.push_back({x, at(c, "ttft_ms", "p50")});
            }
            for (auto& [_, s] : dm) {
                std::sort(s.points.begin(), s.points.end());
                d.series.push_back(s);
            }
            for (auto& [_, s] : tm) {
                std::sort(s.points.begin(), s.points.end());
                t.series.push_back(s);
            }
        }
        out.plots.push_back(std::move(d));
        out.plots.push_back(std::move(t));
    } else {
        return absl::UnimplementedError(absl::StrCat("--compare draws agent and sweep runs; ", workload,
                                                     " runs: read their results.csv side by side"));
    }
    return out;
}

}  // namespace dg::bench
