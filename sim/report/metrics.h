// metrics.jsonl, for both kinds of run (records: proto/fedcl/v1/sim_report.proto):
//   federated  one SimMetricsLine per evaluation of each (method, pattern, seed) run, appended as
//              the run goes: accuracy, loss, participants, cumulative bytes up and down, FedAU's
//              weight error against the true 1/p_n (null for other rules), times;
//   continual  per (method, seed) run, one ClMetricsLine per task (the accuracy-matrix row after
//              it), then one with the pool's growth over rounds.
#ifndef FEDCL_SIM_REPORT_METRICS_H_
#define FEDCL_SIM_REPORT_METRICS_H_

#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sim/run/results.h"

namespace fedcl::sim {

// One federated metrics line (one JSON object, no newline), and every evaluation of a run, one
// per line. InvalidArgument if a name is not UTF-8.
absl::StatusOr<std::string> MetricsLine(const RunResult& run, const EvalPoint& point);
absl::StatusOr<std::string> MetricsLines(const RunResult& run);
// A continual run's lines: its tasks', then its pool's, each ending in a newline.
absl::StatusOr<std::string> ClMetricsLines(const ClRunResult& run);

// metrics.jsonl as a run writes it: created empty, then lines appended and flushed as they come,
// so that a long run can be watched. Used from one thread.
class MetricsLog {
 public:
  // Creates or truncates `path`. Unavailable naming it if it cannot be written.
  static absl::StatusOr<std::unique_ptr<MetricsLog>> Create(const std::string& path);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Appends `lines` (each ending in a newline) and flushes. Unavailable if the write fails.
  absl::Status Append(absl::string_view lines);

 private:
  MetricsLog(std::FILE* file, std::string path) : file_(file), path_(std::move(path)) {}
  std::FILE* const file_;
  const std::string path_;
};

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_REPORT_METRICS_H_
