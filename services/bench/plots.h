// PNG plots drawn by gnuplot (Debian gnuplot-nox, pngcairo terminal): for each plot a self-contained
// script (data inline) is written next to the PNG, so a person can restyle or re-render it by hand.
//   sweep:  tok/s and TTFT against concurrency (a line per context) and against context (a line per
//           concurrency); agent: TTFT per turn, cache on vs off; fan-out: TTFT and tok/s against width;
//   replay: TTFT p50/p99 against the arrival rate.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "services/bench/report.h"

namespace dg::bench {

struct Series {
    std::string name;
    std::vector<std::pair<double, double>> points;
};

struct Plot {
    std::string file;  // e.g. "tokps_vs_concurrency.png"
    std::string title, xlabel, ylabel;
    bool logx = false;
    std::vector<Series> series;
};

// The plots for a run's cells (none for an empty run).
std::vector<Plot> plots_for(const std::string& workload, const std::vector<CellReport>& cells);

// The gnuplot script for one plot (writes `p.file` when run in the output folder).
std::string gnuplot_script(const Plot& p);

// Writes DIR/<name>.gp and runs `gnuplot` on it in DIR. A missing gnuplot is an error saying what to install.
absl::Status render(const std::string& dir, const Plot& p);

}  // namespace dg::bench
