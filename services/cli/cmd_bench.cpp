// deltagate bench: drives a running deployment through its public API (deltagate's gRPC API, or any
// OpenAI-compatible HTTP server) with a seeded workload (sweep, agent, fanout, replay) and writes
// results.json, results.csv and PNG plots into --out, prints the summary tables, and exits 1 when any
// request failed (unless --allow-errors). The parts live in services/bench/ (docs/bench.md).
#include <ctime>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "services/bench/compare.h"
#include "services/bench/driver.h"
#include "services/bench/plots.h"
#include "services/bench/progress.h"
#include "services/bench/report.h"
#include "services/bench/runner.h"
#include "services/bench/workload.h"
#include "services/cli/command.h"
#include "services/cli/flags.h"

#ifndef DG_VERSION
#define DG_VERSION "unknown"
#endif

namespace dg::cli {
namespace {

using namespace ::dg::bench;

constexpr const char* kUsage =
    "usage: deltagate bench (--grpc HOST:PORT | --openai http://HOST:PORT/v1) [--api-key K] [--model NAME]\n"
    "         --workload sweep|agent|fanout|replay [workload flags] [--seed N] --out DIR\n"
    "         [--label TEXT] [--slo-ttft-ms MS] [--slo-itl-ms MS] [--allow-errors] [--no-plots]\n"
    "         [--deadline-s S] [--vocab N]\n"
    "       deltagate bench --compare DIR,DIR[,...] --out DIR   (earlier agent or sweep runs side by side)\n"
    "  sweep:  --context 512,2k,8k  --concurrency 1,2,4  --output 64  [--requests N per cell (2 x concurrency)]\n"
    "  agent:  --sessions 2 --turns 8 --system-tokens 1024 --user-tokens 64 --tool-tokens 64:512 --output 32\n"
    "          [--cache on|off|both]  (off: every request asks the server not to reuse cached prefixes)\n"
    "  fanout: --context 2k --fanout 4,16 --suffix-tokens 16 --output 16 [--requests N batches per cell (2)]\n"
    "  replay: --trace FILE.jsonl | --rate 0.5,1,2 [--requests 16 --context 256 --output 16]\n"
    "          [--concurrency N in flight at most (64)]\n"
    "Prompts are token ids drawn from the seed (the same requests for every server). The API key may also come\n"
    "from DELTAGATE_AUTH_TOKEN or OPENAI_API_KEY. Results: DIR/results.json, DIR/results.csv, DIR/*.png.\n";

int fail(const std::string& msg, int code = 1) {
    std::fprintf(stderr, "deltagate bench: %s\n", msg.c_str());
    return code;
}

// "512,2k,128K" -> {512, 2048, 131072}.
absl::StatusOr<std::vector<int>> int_list(const std::string& flag, const std::string& v) {
    std::vector<int> out;
    for (absl::string_view part : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        int mult = 1;
        if (!part.empty() && (part.back() == 'k' || part.back() == 'K')) {
            mult = 1024;
            part.remove_suffix(1);
        }
        int n = 0;
        if (!absl::SimpleAtoi(part, &n) || n < 1 || n > (1 << 30) / mult)
            return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", v, "' is not a list of positive integers"));
        out.push_back(n * mult);
    }
    if (out.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
    return out;
}

std::string utc_now() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// --compare DIR,DIR,...: earlier runs side by side (tables and plots), no server involved.
int run_compare(const ParsedFlags& f, const std::string& dirs) {
    const auto out_dir = f.get("out");
    if (!out_dir) return fail("--compare needs --out DIR (the comparison plots go there)", 2);
    if (f.has("grpc") || f.has("openai") || f.has("workload"))
        return fail("--compare reads earlier results: give no --grpc, --openai or --workload", 2);
    std::vector<std::string> list = absl::StrSplit(dirs, ',', absl::SkipEmpty());
    auto c = compare_runs(list);
    if (!c.ok()) return fail(std::string(c.status().message()));
    std::error_code ec;
    std::filesystem::create_directories(*out_dir, ec);
    if (ec) return fail(absl::StrCat("--out ", *out_dir, ": ", ec.message()), 2);
    std::fputs(c->tables.c_str(), stdout);
    std::fflush(stdout);
    if (!f.has("no-plots"))
        for (const Plot& p : c->plots)
            if (auto s = render(*out_dir, p); !s.ok()) return fail(std::string(s.message()));
    return 0;
}

int run_bench(const std::vector<std::string>& args) {
    auto f = parse_flags(args,
                         {"grpc", "openai", "api-key", "model", "workload", "seed", "out", "label", "slo-ttft-ms",
                          "slo-itl-ms", "deadline-s", "vocab", "context", "concurrency", "output", "requests",
                          "sessions", "turns", "system-tokens", "user-tokens", "tool-tokens", "cache", "fanout",
                          "suffix-tokens", "trace", "rate", "compare"},
                         {"help", "allow-errors", "no-plots"});
    if (!f.ok() || f->has("help")) {
        if (!f.ok()) std::fprintf(stderr, "deltagate bench: %s\n", std::string(f.status().message()).c_str());
        std::fputs(kUsage, stderr);
        return f.ok() ? 0 : 2;
    }
    if (!f->positional.empty()) return fail(absl::StrCat("unexpected argument '", f->positional[0], "'"), 2);
    if (auto dirs = f->get("compare")) return run_compare(*f, *dirs);
    if (f->has("grpc") == f->has("openai")) return fail("give exactly one of --grpc HOST:PORT or --openai URL", 2);
    const auto out_dir = f->get("out");
    if (!out_dir) return fail("--out DIR is required (results.json, results.csv and the plots go there)", 2);
    const std::string workload = f->get("workload").value_or("");
    if (workload != "sweep" && workload != "agent" && workload != "fanout" && workload != "replay")
        return fail("--workload must be sweep, agent, fanout or replay", 2);

    // Flags that do not belong to the chosen workload are refused rather than ignored.
    const std::map<std::string, std::set<std::string>> own = {
        {"sweep", {"context", "concurrency", "output", "requests"}},
        {"agent", {"sessions", "turns", "system-tokens", "user-tokens", "tool-tokens", "output", "cache"}},
        {"fanout", {"context", "fanout", "suffix-tokens", "output", "requests"}},
        {"replay", {"trace", "rate", "requests", "context", "output", "concurrency"}}};
    for (const auto& [w, flags] : own)
        for (const std::string& fl : flags)
            if (f->has(fl) && !own.at(workload).count(fl))
                return fail(absl::StrCat("--", fl, " is not a flag of --workload ", workload), 2);

    uint64_t seed = 1;
    if (auto s = f->get("seed"); s && !absl::SimpleAtoi(*s, &seed)) return fail("--seed must be an integer", 2);
    double deadline_s = 600;
    if (auto d = f->get("deadline-s"); d && (!absl::SimpleAtod(*d, &deadline_s) || deadline_s <= 0))
        return fail("--deadline-s must be > 0", 2);
    Slo slo;
    if (auto v = f->get("slo-ttft-ms"); v && (!absl::SimpleAtod(*v, &slo.ttft_ms) || slo.ttft_ms <= 0))
        return fail("--slo-ttft-ms must be > 0", 2);
    if (auto v = f->get("slo-itl-ms"); v && (!absl::SimpleAtod(*v, &slo.itl_ms) || slo.itl_ms <= 0))
        return fail("--slo-itl-ms must be > 0", 2);
    auto one_int = [&](const char* flag, int def, int* out) -> bool {
        *out = def;
        if (auto v = f->get(flag)) {
            auto l = int_list(flag, *v);
            if (!l.ok() || l->size() != 1) return false;
            *out = (*l)[0];
        }
        return true;
    };
    auto list = [&](const char* flag, const std::string& def) { return int_list(flag, f->get(flag).value_or(def)); };

    std::string api_key = f->get("api-key").value_or("");
    if (const char* e = std::getenv("DELTAGATE_AUTH_TOKEN"); api_key.empty() && e) api_key = e;
    if (const char* e = std::getenv("OPENAI_API_KEY"); api_key.empty() && e) api_key = e;

    std::unique_ptr<Driver> driver;
    if (auto g = f->get("grpc")) {
        driver = make_grpc_driver(*g, api_key, deadline_s);
    } else {
        auto d = make_openai_driver(*f->get("openai"), api_key, deadline_s);
        if (!d.ok()) return fail(std::string(d.status().message()), 2);
        driver = std::move(*d);
    }
    auto info = driver->probe(f->get("model").value_or(""));
    if (!info.ok()) return fail(std::string(info.status().message()));
    int vocab = info->vocab_size;
    if (auto v = f->get("vocab"); v && (!absl::SimpleAtoi(*v, &vocab) || vocab < 2)) return fail("--vocab must be >= 2", 2);
    if (vocab <= 0)
        return fail(absl::StrCat(info->server, " does not report its vocabulary size: pass --vocab N (prompt token ids "
                                               "are drawn below it)"), 2);
    const TokenRange range = token_range(vocab);

    // The workload's cells.
    std::vector<Cell> cells;
    if (workload == "sweep") {
        SweepSpec s;
        auto c = list("context", "512,2k,8k");
        auto n = list("concurrency", "1,2,4");
        auto o = list("output", "64");
        for (const auto* l : {&c, &n, &o})
            if (!l->ok()) return fail(std::string(l->status().message()), 2);
        s.contexts = *c, s.concurrency = *n, s.outputs = *o;
        if (!one_int("requests", 0, &s.requests)) return fail("--requests must be one positive integer", 2);
        cells = make_sweep(s, seed, range);
    } else if (workload == "agent") {
        AgentSpec s;
        if (!one_int("sessions", 2, &s.sessions) || !one_int("turns", 8, &s.turns) ||
            !one_int("system-tokens", 1024, &s.system_tokens) || !one_int("user-tokens", 64, &s.user_tokens) ||
            !one_int("output", 32, &s.output))
            return fail("--sessions, --turns, --system-tokens, --user-tokens and --output take one positive integer", 2);
        const std::string tool = f->get("tool-tokens").value_or("64:512");
        std::vector<std::string> mm = absl::StrSplit(tool, ':');
        if (mm.size() > 2 || !absl::SimpleAtoi(mm[0], &s.tool_min) ||
            !absl::SimpleAtoi(mm.size() == 2 ? mm[1] : mm[0], &s.tool_max) || s.tool_min < 1 || s.tool_max < s.tool_min)
            return fail("--tool-tokens takes MIN:MAX (or one N), MIN >= 1", 2);
        const std::string cache = f->get("cache").value_or("on");
        if (cache == "on") s.cache = {true};
        else if (cache == "off") s.cache = {false};
        else if (cache == "both") s.cache = {true, false};
        else return fail("--cache must be on, off or both", 2);
        cells = make_agent(s, seed, range);
    } else if (workload == "fanout") {
        FanoutSpec s;
        auto c = list("context", "2k");
        auto w = list("fanout", "4,16");
        if (!c.ok()) return fail(std::string(c.status().message()), 2);
        if (!w.ok()) return fail(std::string(w.status().message()), 2);
        s.contexts = *c, s.widths = *w;
        if (!one_int("suffix-tokens", 16, &s.suffix_tokens) || !one_int("output", 16, &s.output) ||
            !one_int("requests", 2, &s.requests))
            return fail("--suffix-tokens, --output and --requests take one positive integer", 2);
        cells = make_fanout(s, seed, range);
    } else {
        ReplaySpec s;
        s.trace = f->get("trace").value_or("");
        if (s.trace.empty() == !f->has("rate")) return fail("replay needs exactly one of --trace FILE or --rate R[,R...]", 2);
        if (auto r = f->get("rate"))
            for (absl::string_view part : absl::StrSplit(*r, ',', absl::SkipEmpty())) {
                double v = 0;
                if (!absl::SimpleAtod(part, &v) || v <= 0) return fail("--rate takes positive requests/s", 2);
                s.rates.push_back(v);
            }
        if (!one_int("requests", 16, &s.requests) || !one_int("context", 256, &s.context) ||
            !one_int("output", 16, &s.output) || !one_int("concurrency", 64, &s.max_inflight))
            return fail("--requests, --context, --output and --concurrency take one positive integer", 2);
        auto c = make_replay(s, seed, range);
        if (!c.ok()) return fail(std::string(c.status().message()), 2);
        cells = std::move(*c);
    }

    // Every request must fit the server before any is sent.
    for (const Cell& c : cells)
        for (const Job& j : c.jobs) {
            size_t suffix = 0;
            for (const auto& s : j.suffixes) suffix = std::max(suffix, s.size());
            const int prompt = int(j.prompt.size() + suffix);
            if (info->max_prompt_tokens > 0 && prompt > info->max_prompt_tokens)
                return fail(absl::StrCat("a prompt of ", prompt, " tokens is over the server's limit of ",
                                         info->max_prompt_tokens, " prompt tokens: lower --context (or raise the "
                                         "front's --max-prompt-tokens)"));
            if (info->max_context > 0 && prompt + j.max_tokens > info->max_context)
                return fail(absl::StrCat("a prompt of ", prompt, " tokens + ", j.max_tokens,
                                         " output tokens is over the server's context of ", info->max_context,
                                         " tokens: lower --context/--output (or serve a larger context)"));
        }

    std::error_code ec;
    std::filesystem::create_directories(*out_dir, ec);
    if (ec) return fail(absl::StrCat("--out ", *out_dir, ": ", ec.message()), 2);

    std::fprintf(stderr, "deltagate bench: %s, model %s, %s workload, %d requests in %zu cells\n",
                 info->server.c_str(), info->model.c_str(), workload.c_str(), count_requests(cells), cells.size());
    auto runs = run_cells(*driver, cells, stderr_is_tty());

    RunInfo run;
    run.workload = workload;
    run.command = "deltagate bench " + absl::StrJoin(args, " ");
    run.label = f->get("label").value_or("");
    run.date_utc = utc_now();
    run.version = DG_VERSION;
    run.seed = seed;
    run.server = *info;
    run.fanout_method = driver->fanout_method();
    run.slo = slo;
    std::vector<CellReport> reports;
    int failed = 0;
    std::string first_error;
    for (const CellResults& r : runs) {
        reports.push_back({r.cell, compute_metrics(r.results, slo)});
        failed += reports.back().m.failed;
        if (first_error.empty()) first_error = reports.back().m.first_error;
    }
    {
        std::ofstream j(*out_dir + "/results.json");
        j << results_json(run, reports).dump(2) << "\n";
        std::ofstream c(*out_dir + "/results.csv");
        c << results_csv(reports);
        if (!j || !c) return fail(absl::StrCat("cannot write results into ", *out_dir));
    }
    std::fputs(summary_tables(run, reports).c_str(), stdout);
    std::fflush(stdout);
    int rc = 0;
    if (!f->has("no-plots"))
        for (const Plot& p : plots_for(workload, reports))
            if (auto s = render(*out_dir, p); !s.ok()) {
                std::fprintf(stderr, "deltagate bench: %s\n", std::string(s.message()).c_str());
                rc = 1;
                break;
            }
    std::fprintf(stderr, "deltagate bench: results in %s/results.json, results.csv%s\n", out_dir->c_str(),
                 f->has("no-plots") ? "" : " and *.png");
    if (failed > 0) {
        std::fprintf(stderr, "deltagate bench: %d request%s failed (first: %s)%s\n", failed, failed == 1 ? "" : "s",
                     first_error.c_str(), f->has("allow-errors") ? "; --allow-errors: exit status 0" : "");
        if (!f->has("allow-errors")) rc = 1;
    }
    return rc;
}

}  // namespace

DG_COMMAND("bench", "benchmark a deployment (gRPC or OpenAI HTTP): sweep, agent, fanout, replay; JSON/CSV/PNG", run_bench);

}  // namespace dg::cli
