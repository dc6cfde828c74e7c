// Outputs of a continual scenario, next to the federated ones (outputs.h):
//   metrics.jsonl  one line per (method, seed, task): the accuracy-matrix row after the task,
//                  then one line per (method, seed) with the pool's growth over rounds;
//   summary.json   per method and seed: Ā, A_T, forgetting, BWT (LAE: its online module's too),
//                  OOD AUROC and FPR@95 per detector and shift, bytes, proposals, the pool;
//   report.html    the summary table, the OOD table, each method's accuracy matrix as a heat-map
//                  (first seed) and the pool's growth (SEMA), self-contained.
#ifndef FEDCL_SIM_REPORT_CL_OUTPUTS_H_
#define FEDCL_SIM_REPORT_CL_OUTPUTS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "sim/run/results.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

std::string ClMetricsLines(const ClRunResult& run);
std::string ClSummaryJson(const Scenario& scenario, const std::vector<ClRunResult>& runs,
                          double wall_seconds);
std::string ClReportHtml(const Scenario& scenario, const std::vector<ClRunResult>& runs,
                         absl::string_view chart_library);
// A plain-text table of the runs (what the README quotes).
std::string ClTextTable(const std::vector<ClRunResult>& runs);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_REPORT_CL_OUTPUTS_H_
