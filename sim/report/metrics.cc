#include "sim/report/metrics.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "proto/fedcl/v1/sim_report.pb.h"
#include "proto/json.h"
#include "sim/report/records.h"

namespace fedcl::sim {

absl::StatusOr<std::string> MetricsLine(const RunResult& run, const EvalPoint& p) {
  v1::SimMetricsLine line;
  line.set_method(run.method);
  line.set_pattern(run.pattern);
  line.set_seed(static_cast<double>(run.seed));
  line.set_round(static_cast<int32_t>(p.round));
  line.set_accuracy(p.accuracy);
  *line.mutable_loss() = proto::JsonNumber(p.loss);
  *line.mutable_train_loss() = proto::JsonNumber(p.train_loss);
  line.set_participants(static_cast<int32_t>(p.participants));
  line.set_bytes_up(static_cast<double>(p.bytes_up));
  line.set_bytes_down(static_cast<double>(p.bytes_down));
  // A negative weight error means "not FedAU": null, as a NaN would be.
  *line.mutable_fedau_weight_error() = proto::JsonNumber(p.weight_error < 0 ? NAN : p.weight_error);
  line.set_wall_seconds(p.wall_seconds);
  line.set_virtual_seconds(p.virtual_seconds);
  line.set_updates(static_cast<double>(p.updates));
  *line.mutable_local_mean_accuracy() =
      proto::JsonNumber(p.local_mean_accuracy < 0 ? NAN : p.local_mean_accuracy);
  return proto::PrintJson(line);
}

absl::StatusOr<std::string> MetricsLines(const RunResult& run) {
  std::string lines;
  for (const EvalPoint& point : run.evals) {
    FEDCL_ASSIGN_OR_RETURN(std::string line, MetricsLine(run, point));
    absl::StrAppend(&lines, line, "\n");
  }
  return lines;
}

absl::StatusOr<std::string> ClMetricsLines(const ClRunResult& run) {
  std::string lines;
  for (size_t t = 0; t < run.accuracy.size(); ++t) {
    v1::ClMetricsLine task;
    task.set_method(run.method);
    task.set_seed(static_cast<double>(run.seed));
    task.set_after_task(static_cast<int32_t>(t));
    task.set_task(run.task_names[t]);
    task.mutable_accuracy()->Assign(run.accuracy[t].begin(), run.accuracy[t].end());
    FEDCL_ASSIGN_OR_RETURN(std::string line, proto::PrintJson(task));
    absl::StrAppend(&lines, line, "\n");
  }
  v1::ClMetricsLine pool;
  pool.set_method(run.method);
  pool.set_seed(static_cast<double>(run.seed));
  *pool.mutable_pool() = PoolSeries(run.pool);
  FEDCL_ASSIGN_OR_RETURN(std::string line, proto::PrintJson(pool));
  return absl::StrCat(lines, line, "\n");
}

absl::StatusOr<std::unique_ptr<MetricsLog>> MetricsLog::Create(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "w");
  if (file == nullptr) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return std::unique_ptr<MetricsLog>(new MetricsLog(file, path));
}

MetricsLog::~MetricsLog() { std::fclose(file_); }

absl::Status MetricsLog::Append(absl::string_view lines) {
  if (std::fwrite(lines.data(), 1, lines.size(), file_) != lines.size() ||
      std::fflush(file_) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot write ", path_));
  }
  return absl::OkStatus();
}

}  // namespace fedcl::sim
