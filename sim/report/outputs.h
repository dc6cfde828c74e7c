// What fedcl-sim writes to --out=DIR:
//   metrics.jsonl  one JSON object per (method, pattern, seed, evaluated round), appended as the
//                  run goes: accuracy, loss, participants, cumulative bytes up and down, FedAU
//                  weight error against the true 1/p_n (null for other methods), times;
//   summary.json   per (method, pattern): final test accuracy as mean and std over seeds, where a
//                  seed's "final" is the mean over its last 10% of evaluations (at least one);
//                  wall time; and the process's peak RSS;
//   report.html    one self-contained page (the charting library is inlined): accuracy against
//                  rounds per method and pattern, the participation heat-map (clients × rounds),
//                  estimated FedAU weights against the true 1/p_n, and the summary table.
#ifndef FEDCL_SIM_REPORT_OUTPUTS_H_
#define FEDCL_SIM_REPORT_OUTPUTS_H_

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sim/run/results.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

// One metrics.jsonl line.
std::string MetricsLine(const RunResult& run, const EvalPoint& point);

// JSON and HTML helpers shared by the reports: a quoted JSON string (with "<" escaped so that it
// may sit inside <script>), a number (null for NaN and infinities), HTML-escaped text.
std::string Quote(absl::string_view text);
std::string Number(double value);
std::string HtmlEscape(absl::string_view text);
// The reports' script harness (see outputs.cc).
extern const absl::string_view kChartHarness;
extern const absl::string_view kChartHarnessEnd;

struct MethodSummary {
  std::string method;
  std::string pattern;
  std::vector<double> final_accuracy;  // per seed
  double mean = 0.0;
  double stddev = 0.0;  // sample standard deviation over seeds (0 for one seed)
  double wall_seconds = 0.0;
  double setup_seconds = 0.0;
  int64_t updates = 0;
  int64_t rss_bytes = 0;  // largest resident set at the end of a run (all clients still held)
  int64_t aggregator_bytes = 0;
  int64_t stragglers = 0;
  int64_t dropouts = 0;
};

// A run's final accuracy: the mean over its last ceil(10%) evaluations.
double FinalAccuracy(const std::vector<EvalPoint>& evals);
// Summaries in the scenario's method order, then pattern order.
std::vector<MethodSummary> Summarize(const Scenario& scenario, const std::vector<RunResult>& runs);

std::string SummaryJson(const Scenario& scenario, const std::vector<MethodSummary>& summaries,
                        double wall_seconds, int64_t peak_rss_bytes);

// `maps` holds one participation map per pattern (the first seed's). `chart_library` is the
// charting library's JavaScript, inlined so the page opens offline.
std::string ReportHtml(const Scenario& scenario, const std::vector<RunResult>& runs,
                       const std::map<std::string, ParticipationMap>& maps,
                       const std::vector<MethodSummary>& summaries,
                       absl::string_view chart_library);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_REPORT_OUTPUTS_H_
