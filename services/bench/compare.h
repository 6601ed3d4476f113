// Several runs side by side (`deltagate bench --compare DIR,DIR,... --out DIR`): reads each run's
// results.json (the same workload; each run named by its --label, or its folder), prints tables with one
// column per run and draws the comparison plots: agent TTFT per turn (a line per run and cache setting),
// sweep decode tok/s per chat and TTFT against concurrency (a line per run and context).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/bench/plots.h"

namespace dg::bench {

struct Comparison {
    std::string tables;       // printed
    std::vector<Plot> plots;  // to render into the output folder
};

absl::StatusOr<Comparison> compare_runs(const std::vector<std::string>& dirs);

}  // namespace dg::bench
