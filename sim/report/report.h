// The report of a scenario, one module for both kinds of run: what fedcl-sim writes to --out=DIR
// once the runs are done. metrics.jsonl is written while they run (metrics.h).
//
//   federated  summary.json (SimSummary) and report.html;
//   continual  summary.json (ClSummary) and report.html.
//
// The records and their field names are in proto/fedcl/v1/sim_report.proto; summary.h and html.h
// say what each file holds.
#ifndef FEDCL_SIM_REPORT_REPORT_H_
#define FEDCL_SIM_REPORT_REPORT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/base/filesystem.h"
#include "proto/fedcl/v1/sim_report.pb.h"
#include "sim/report/summary.h"
#include "sim/run/results.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

// The charting library (ECharts) embedded in the binary at build time
// (sim/report/chart_library.S.in), which report.html inlines.
absl::string_view ChartLibrary();

// Writes DIR/summary.json and DIR/report.html (each atomically) for the federated runs of
// `scenario`: `summaries` are Summarize(scenario, runs), `maps` the participation maps per
// pattern, `wall_seconds` the time the runs took. The file system's status if a file cannot be
// written; InvalidArgument if a name is not UTF-8.
absl::Status WriteFederatedReport(base::FileSystem& fs, const std::string& dir,
                                  const Scenario& scenario, const std::vector<RunResult>& runs,
                                  const std::map<std::string, ParticipationMap>& maps,
                                  const std::vector<MethodSummary>& summaries, double wall_seconds,
                                  const v1::SimTuning* tuning = nullptr);
// The same for continual runs.
absl::Status WriteContinualReport(base::FileSystem& fs, const std::string& dir,
                                  const Scenario& scenario, const std::vector<ClRunResult>& runs,
                                  double wall_seconds);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_REPORT_REPORT_H_
