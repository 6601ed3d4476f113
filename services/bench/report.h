// What a run leaves behind: results.json (the run's parameters and one object per cell), results.csv (one
// row per cell, the same figures flattened), and the summary tables printed at the end, laid out as
// published benchmark tables are (rows = context, columns = parallel chats; agent: rows = turns).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "services/bench/driver.h"
#include "services/bench/metrics.h"
#include "services/bench/workload.h"

namespace dg::bench {

struct RunInfo {
    std::string workload, command, label, date_utc, version;
    uint64_t seed = 0;
    ServerInfo server;
    std::string fanout_method;
    Slo slo;
};

struct CellReport {
    const Cell* cell;
    CellMetrics m;
};

nlohmann::json cell_json(const CellReport& c);
nlohmann::json results_json(const RunInfo& run, const std::vector<CellReport>& cells);
std::string results_csv(const std::vector<CellReport>& cells);
std::string summary_tables(const RunInfo& run, const std::vector<CellReport>& cells);

}  // namespace dg::bench
