// report.html, for both kinds of run: one self-contained page (the charting library inlined, so
// it opens offline) holding the tables, the charts, and the data they draw from as JSON
// (SimReportData or ClReportData, proto/fedcl/v1/sim_report.proto):
//   federated  the summary table; test accuracy against rounds per method and pattern (mean over
//              seeds), the participation heat-map (clients × rounds, first seed) and FedAU's
//              estimated weights against the true 1/p_n;
//   continual  the summary table and the OOD table; each method's accuracy matrix as a heat-map
//              (first seed) and the pool's growth (SEMA).
// For the headless-browser tests, the page marks <body> with data-charts-expected,
// data-charts-rendered and data-errors (script errors and console errors).
#ifndef FEDCL_SIM_REPORT_HTML_H_
#define FEDCL_SIM_REPORT_HTML_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/fedcl/v1/sim_report.pb.h"
#include "sim/report/summary.h"
#include "sim/run/results.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

// `maps` holds one participation map per pattern (the first seed's). `chart_library` is the
// charting library's JavaScript. `tuning`, if given, adds the sensitivity chart (validation
// accuracy against η per method). InvalidArgument if a name is not UTF-8.
absl::StatusOr<std::string> ReportHtml(const Scenario& scenario, const std::vector<RunResult>& runs,
                                       const std::map<std::string, ParticipationMap>& maps,
                                       const std::vector<MethodSummary>& summaries,
                                       absl::string_view chart_library,
                                       const v1::SimTuning* tuning = nullptr);
absl::StatusOr<std::string> ClReportHtml(const Scenario& scenario,
                                         const std::vector<ClRunResult>& runs,
                                         absl::string_view chart_library);

// `text` with &, <, > and " escaped for HTML.
std::string HtmlEscape(absl::string_view text);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_REPORT_HTML_H_
