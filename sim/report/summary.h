// summary.json and the table printed at the end of a run, for both kinds of run (records:
// proto/fedcl/v1/sim_report.proto):
//   federated  SimSummary: per (method, pattern), final test accuracy as mean and sample std over
//              seeds, where a seed's "final" is the mean over its last 10% of evaluations (at
//              least one); times, updates, memory; the process's peak RSS;
//   continual  ClSummary: per (method, seed) run, Ā, A_T, forgetting, BWT (LAE: its online
//              module's too), OOD AUROC and FPR@95 per detector and shift, bytes, proposals, the
//              pool.
#ifndef FEDCL_SIM_REPORT_SUMMARY_H_
#define FEDCL_SIM_REPORT_SUMMARY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sim/run/results.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

// One (method, pattern) of a federated scenario, over its seeds.
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
  bool asynchronous = false;     // buffered (round_policy): rounds count buffers
  int64_t failed_trainings = 0;  // participants whose training diverged or moved nothing
  int stalled_runs = 0;          // asynchronous runs stopped early (RunResult::stalled)
  double virtual_seconds = 0.0;  // at the last evaluation, mean over seeds
  int64_t bytes_up = 0;          // summed over seeds
  // Asynchronous runs, summed over seeds: accepted updates by staleness, and refused ones.
  std::vector<int64_t> staleness_histogram;
  int64_t refused_stale = 0;
  // Time to accuracy against the final accuracy (mean over seeds) of the scenario's first
  // synchronous method under the same pattern (-1 without one): the first evaluation where the
  // mean of the last 10% of evaluations reaches it, in virtual seconds and updates, averaged
  // over the seeds that reach it.
  double target_accuracy = -1.0;
  int reached_seeds = 0;
  double seconds_to_target = 0.0;
  double updates_to_target = 0.0;
  // FedAWE: the final accuracy of the mean of all local copies, mean over seeds; -1 otherwise.
  double local_mean_final = -1.0;
};

// A run's final accuracy: the mean over its last ceil(10%) evaluations of `accuracy` (the server
// model's, or FedAWE's local_mean_accuracy).
double FinalAccuracy(const std::vector<EvalPoint>& evals,
                     double EvalPoint::*accuracy = &EvalPoint::accuracy);
// Summaries in the scenario's method order, then pattern order; a (method, pattern) without
// runs is left out. Time to accuracy is filled in when the scenario has a synchronous method.
std::vector<MethodSummary> Summarize(const Scenario& scenario, const std::vector<RunResult>& runs);

// summary.json, indented. InvalidArgument if a name is not UTF-8.
absl::StatusOr<std::string> SummaryJson(const Scenario& scenario,
                                        const std::vector<MethodSummary>& summaries,
                                        double wall_seconds, int64_t peak_rss_bytes);
absl::StatusOr<std::string> ClSummaryJson(const Scenario& scenario,
                                          const std::vector<ClRunResult>& runs,
                                          double wall_seconds);

// The plain-text tables printed at the end (what the README quotes): one line per (method,
// pattern) with its final accuracy; one line per continual run (and the OOD results of the
// first), "-" in the pool column for a run without a pool series.
std::string SummaryText(const std::vector<MethodSummary>& summaries);
// What the figures show, a sentence per pattern, whichever way they come out: where the first
// synchronous method (the scenario's subject) ranks among the synchronous ones and how far it is
// from the best, in points and in its standard deviations; and how long each asynchronous method
// took to reach its final accuracy against the time it took itself. Empty without summaries.
std::string Findings(const std::vector<MethodSummary>& summaries);
std::string ClTextTable(const std::vector<ClRunResult>& runs);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_REPORT_SUMMARY_H_
