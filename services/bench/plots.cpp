#include "services/bench/plots.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace dg::bench {
namespace {

// One series per value of `key`, x and y from the cells (cells without a finite y are left out).
template <typename K, typename X, typename Y>
std::vector<Series> by(const std::vector<CellReport>& cells, K key, const std::string& prefix, X x, Y y) {
    std::map<int, Series> m;
    for (const CellReport& c : cells) {
        const double yv = y(c);
        if (!std::isfinite(yv)) continue;
        Series& s = m[key(c)];
        s.name = absl::StrCat(prefix, key(c));
        s.points.push_back({x(c), yv});
    }
    std::vector<Series> out;
    for (auto& [k, s] : m) {
        std::sort(s.points.begin(), s.points.end());
        out.push_back(std::move(s));
    }
    return out;
}

std::string quoted(const std::string& s) { return "\"" + absl::StrReplaceAll(s, {{"\\", "\\\\"}, {"\"", "\\\""}}) + "\""; }

}  // namespace

std::vector<Plot> plots_for(const std::string& workload, const std::vector<CellReport>& cells) {
    std::vector<Plot> out;
    if (cells.empty()) return out;
    auto ctx = [](const CellReport& c) { return c.cell->context; };
    auto conc = [](const CellReport& c) { return c.cell->concurrency; };
    auto xctx = [](const CellReport& c) { return double(c.cell->context); };
    auto xconc = [](const CellReport& c) { return double(c.cell->concurrency); };
    auto tokps = [](const CellReport& c) { return c.m.ok > 0 ? c.m.output_tok_per_s : NAN; };
    auto ttft = [](const CellReport& c) { return c.m.ttft_ms.p50; };
    if (workload == "sweep") {
        // Several output lengths: plot the first (the common case is one).
        const int o = cells.front().cell->output;
        std::vector<CellReport> sub;
        for (const CellReport& c : cells)
            if (c.cell->output == o) sub.push_back(c);
        const std::string t = absl::StrCat(" (output ", o, " tokens)");
        out.push_back({"tokps_vs_concurrency.png", "Generation tok/s, all chats" + t, "parallel chats", "tokens/s",
                       true, by(sub, ctx, "context ", xconc, tokps)});
        out.push_back({"ttft_vs_concurrency.png", "Time to first token, p50" + t, "parallel chats", "ms", true,
                       by(sub, ctx, "context ", xconc, ttft)});
        out.push_back({"tokps_vs_context.png", "Generation tok/s, all chats" + t, "context tokens", "tokens/s", true,
                       by(sub, conc, "chats ", xctx, tokps)});
        out.push_back({"ttft_vs_context.png", "Time to first token, p50" + t, "context tokens", "ms", true,
                       by(sub, conc, "chats ", xctx, ttft)});
    } else if (workload == "agent") {
        auto cache = [](const CellReport& c) { return c.cell->cache ? 1 : 0; };
        auto turn = [](const CellReport& c) { return double(c.cell->turn); };
        auto series = by(cells, cache, "", turn, ttft);
        for (auto& s : series) s.name = s.name == "1" ? "cache on" : "cache off";
        out.push_back({"ttft_per_turn.png", "Agent sessions: time to first token per turn (p50)", "turn", "ms", false,
                       std::move(series)});
    } else if (workload == "fanout") {
        out.push_back({"fanout_ttft.png", "Fan-out: time to first token (p50 over continuations)",
                       "continuations", "ms", true, by(cells, ctx, "context ", xconc, ttft)});
        out.push_back({"fanout_tokps.png", "Fan-out: generation tok/s, all continuations", "continuations",
                       "tokens/s", true, by(cells, ctx, "context ", xconc, tokps)});
    } else if (workload == "replay") {
        std::vector<CellReport> rated;
        for (const CellReport& c : cells)
            if (c.cell->rate > 0) rated.push_back(c);
        if (!rated.empty()) {
            Plot p{"replay_ttft.png", "Open loop: time to first token against arrival rate", "requests/s", "ms", false, {}};
            Series p50{"p50", {}}, p99{"p99", {}};
            for (const CellReport& c : rated) {
                if (std::isfinite(c.m.ttft_ms.p50)) p50.points.push_back({c.cell->rate, c.m.ttft_ms.p50});
                if (std::isfinite(c.m.ttft_ms.p99)) p99.points.push_back({c.cell->rate, c.m.ttft_ms.p99});
            }
            p.series = {p50, p99};
            out.push_back(std::move(p));
        }
    }
    return out;
}

std::string gnuplot_script(const Plot& p) {
    std::string s = absl::StrCat(
        "# Written by deltagate bench; re-render with: gnuplot ", absl::StrReplaceAll(p.file, {{".png", ".gp"}}), "\n",
        "set terminal pngcairo size 900,560 noenhanced font 'sans,10'\n", "set output ", quoted(p.file), "\n",
        "set title ", quoted(p.title), "\n", "set xlabel ", quoted(p.xlabel), "\n", "set ylabel ", quoted(p.ylabel),
        "\n", "set grid\nset key outside right top\nset yrange [0:*]\n");
    bool logx_ok = p.logx;
    for (const Series& se : p.series)
        for (const auto& [x, y] : se.points) logx_ok = logx_ok && x > 0;
    if (logx_ok) s += "set logscale x 2\n";
    std::string plot;
    for (size_t i = 0; i < p.series.size(); ++i) {
        absl::StrAppend(&s, "$d", i, " << EOD\n");
        for (const auto& [x, y] : p.series[i].points) absl::StrAppend(&s, absl::StrFormat("%.6g %.6g\n", x, y));
        s += "EOD\n";
        absl::StrAppend(&plot, i ? ", " : "plot ", "$d", i, " using 1:2 with linespoints lw 2 pt 7 title ",
                        quoted(p.series[i].name));
    }
    if (p.series.empty() || plot.empty()) {
        // Nothing measured (every request failed): an empty frame that says so, not a missing file.
        s += "set label 1 'no data: every request of these cells failed' at graph 0.5, 0.5 center\n"
             "set xrange [0:1]\nset yrange [0:1]\nplot NaN notitle\n";
        return s;
    }
    return s + plot + "\n";
}

absl::Status render(const std::string& dir, const Plot& p) {
    const std::string gp = absl::StrReplaceAll(p.file, {{".png", ".gp"}});
    {
        std::ofstream f(dir + "/" + gp);
        f << gnuplot_script(p);
        if (!f) return absl::InternalError(absl::StrCat("cannot write ", dir, "/", gp));
    }
    const pid_t pid = fork();
    if (pid < 0) return absl::InternalError("fork failed");
    if (pid == 0) {
        if (chdir(dir.c_str()) != 0) _exit(126);
        // gnuplot's warnings (e.g. a one-point x range) go to a log beside the script, not the terminal.
        const std::string log = gp + ".log";
        if (FILE* l = std::fopen(log.c_str(), "w")) dup2(fileno(l), 2);
        execlp("gnuplot", "gnuplot", gp.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        return absl::FailedPreconditionError(
            "gnuplot not found: install it (Debian: apt-get install gnuplot-nox) or pass --no-plots");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return absl::InternalError(absl::StrCat("gnuplot failed on ", dir, "/", gp, " (see ", dir, "/", gp, ".log)"));
    return absl::OkStatus();
}

}  // namespace dg::bench
