#include "services/bench/runner.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "services/bench/progress.h"

namespace dg::bench {
namespace {

std::string label_of(const Cell& c) {
    if (c.workload == "agent") return absl::StrCat("agent turns, cache ", c.cache ? "on" : "off");
    if (c.workload == "fanout") return absl::StrCat("fanout context ", c.context, " width ", c.concurrency);
    if (c.workload == "replay") return c.rate > 0 ? absl::StrCat("replay ", c.rate, " req/s") : "replay trace";
    return absl::StrCat("sweep context ", c.context, " chats ", c.concurrency, " output ", c.output);
}

void run_closed_loop(Driver& d, const Cell& c, size_t ci, CellResults& out, Progress& p) {
    out.results.resize(c.jobs.size());
    std::atomic<size_t> next{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < std::max(1, c.concurrency); ++t)
        threads.emplace_back([&] {
            for (size_t i; (i = next.fetch_add(1)) < c.jobs.size();) {
                RequestOptions o;
                o.request_id = absl::StrCat("bench-", ci, "-", i);
                o.cache = c.cache;
                out.results[i] = d.generate(c.jobs[i].prompt, c.jobs[i].max_tokens, o);
                p.done(out.results[i].ok);
            }
        });
    for (auto& t : threads) t.join();
}

// Cells [first, last) are the turns of one agent run: session s runs its turns in order.
void run_agent(Driver& d, const std::vector<Cell>& cells, size_t first, size_t last, std::vector<CellResults>& out,
               Progress& p) {
    const size_t sessions = cells[first].jobs.size();
    for (size_t k = first; k < last; ++k) out[k].results.resize(cells[k].jobs.size());
    std::vector<std::thread> threads;
    for (size_t s = 0; s < sessions; ++s)
        threads.emplace_back([&, s] {
            for (size_t k = first; k < last; ++k) {
                if (s >= cells[k].jobs.size()) continue;
                const Job& j = cells[k].jobs[s];
                RequestOptions o;
                o.request_id = absl::StrCat("bench-", k, "-", s);
                o.session_id = j.session_id;
                o.cache = cells[k].cache;
                out[k].results[s] = d.generate(j.prompt, j.max_tokens, o);
                p.done(out[k].results[s].ok);
            }
        });
    for (auto& t : threads) t.join();
}

void run_fanout(Driver& d, const Cell& c, size_t ci, CellResults& out, Progress& p) {
    for (size_t b = 0; b < c.jobs.size(); ++b) {
        RequestOptions o;
        o.request_id = absl::StrCat("bench-", ci, "-", b);
        o.cache = c.cache;
        auto rs = d.fanout(c.jobs[b].prompt, c.jobs[b].suffixes, c.jobs[b].max_tokens, o);
        for (auto& r : rs) {
            p.done(r.ok);
            out.results.push_back(std::move(r));
        }
    }
}

void run_open_loop(Driver& d, const Cell& c, size_t ci, CellResults& out, Progress& p) {
    out.results.resize(c.jobs.size());
    std::mutex mu;
    std::condition_variable cv;
    int inflight = 0;
    const int cap = std::max(1, c.concurrency);
    std::vector<std::thread> threads;
    const Clock::time_point t0 = Clock::now();
    for (size_t i = 0; i < c.jobs.size(); ++i) {
        std::this_thread::sleep_until(t0 + std::chrono::microseconds(int64_t(c.jobs[i].arrival_s * 1e6)));
        {
            std::unique_lock<std::mutex> l(mu);
            cv.wait(l, [&] { return inflight < cap; });  // at the cap, later arrivals are sent late
            ++inflight;
        }
        threads.emplace_back([&, i] {
            RequestOptions o;
            o.request_id = absl::StrCat("bench-", ci, "-", i);
            o.cache = c.cache;
            out.results[i] = d.generate(c.jobs[i].prompt, c.jobs[i].max_tokens, o);
            p.done(out.results[i].ok);
            std::lock_guard<std::mutex> l(mu);
            --inflight;
            cv.notify_all();
        });
    }
    for (auto& t : threads) t.join();
}

}  // namespace

int count_requests(const std::vector<Cell>& cells) {
    int n = 0;
    for (const Cell& c : cells)
        for (const Job& j : c.jobs) n += j.suffixes.empty() ? 1 : int(j.suffixes.size());
    return n;
}

std::vector<CellResults> run_cells(Driver& driver, const std::vector<Cell>& cells, bool progress_bar) {
    std::vector<CellResults> out(cells.size());
    for (size_t i = 0; i < cells.size(); ++i) out[i].cell = &cells[i];
    Progress p(count_requests(cells), progress_bar);
    for (size_t i = 0; i < cells.size();) {
        const Cell& c = cells[i];
        p.set_label(label_of(c));
        if (c.workload == "agent") {
            size_t j = i;
            while (j < cells.size() && cells[j].workload == "agent" && cells[j].cache == c.cache &&
                   (j == i || cells[j].turn > cells[j - 1].turn))
                ++j;
            run_agent(driver, cells, i, j, out, p);
            i = j;
            continue;
        }
        if (c.workload == "fanout") run_fanout(driver, c, i, out[i], p);
        else if (c.workload == "replay") run_open_loop(driver, c, i, out[i], p);
        else run_closed_loop(driver, c, i, out[i], p);
        ++i;
    }
    return out;
}

}  // namespace dg::bench
