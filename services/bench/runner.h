// Runs the cells against a driver: sweep cells closed-loop with `concurrency` requests in flight, agent
// cells as sessions whose turns run in order (sessions side by side), fan-out batches one after another,
// replay cells open-loop at their arrival times. Every job yields results; none is dropped.
#pragma once

#include <vector>

#include "services/bench/driver.h"
#include "services/bench/workload.h"

namespace dg::bench {

struct CellResults {
    const Cell* cell = nullptr;
    std::vector<RequestResult> results;  // one per request (per continuation for fan-out)
};

// Requests the cells will send (a fan-out batch counts its continuations).
int count_requests(const std::vector<Cell>& cells);

std::vector<CellResults> run_cells(Driver& driver, const std::vector<Cell>& cells, bool progress_bar);

}  // namespace dg::bench
