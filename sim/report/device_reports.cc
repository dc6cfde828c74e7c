#include "sim/report/device_reports.h"

#include <algorithm>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "core/cl/cl_metrics.h"
#include "proto/fedcl/v1/scenario.pb.h"
#include "proto/text_format.h"
#include "sim/report/summary.h"

namespace fedcl::sim {
namespace {

absl::StatusOr<std::vector<v1::ClDeviceReport>> ReadReports(const base::FileSystem& fs,
                                                            const std::string& dir) {
  FEDCL_ASSIGN_OR_RETURN(std::vector<std::string> names, fs.ListDirectory(dir));
  std::vector<v1::ClDeviceReport> reports;
  for (const std::string& name : names) {
    if (!absl::StartsWith(name, "device-") || !absl::EndsWith(name, ".report")) continue;
    const std::string path = base::JoinPath(dir, name);
    FEDCL_ASSIGN_OR_RETURN(std::string text, fs.ReadFile(path, 1 << 20));
    v1::ClDeviceReport& r = reports.emplace_back();
    if (absl::Status s = proto::ParseTextFormat(text, &r); !s.ok())
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  }
  return reports;
}

// Adds an evaluation device's matrix to `sum` (the first one fixes the run's method, seed, tasks
// and matrix shape).
absl::Status AddMatrix(const v1::ClDeviceReport& r, ClRunResult& run,
                       std::vector<std::vector<double>>& sum) {
  if (run.method.empty()) {
    run.method = r.method();
    run.seed = r.seed();
    run.task_names.assign(r.task_names().begin(), r.task_names().end());
    sum.assign(r.rows_size(), std::vector<double>(r.task_names_size(), 0.0));
  }
  if (r.rows_size() != static_cast<int>(sum.size()) || r.method() != run.method)
    return absl::InvalidArgumentError(absl::StrCat("device ", r.device(), "'s report differs"));
  for (int i = 0; i < r.rows_size(); ++i) {
    if (r.rows(i).accuracy_size() != static_cast<int>(sum[i].size()))
      return absl::InvalidArgumentError(absl::StrCat("device ", r.device(), ": a ragged row"));
    for (int j = 0; j < r.rows(i).accuracy_size(); ++j) sum[i][j] += r.rows(i).accuracy(j);
  }
  return absl::OkStatus();
}

std::string MatrixText(const ClRunResult& run, int evaluators) {
  std::string out = absl::StrCat("\naccuracy matrix (row i: after task i), mean of ", evaluators,
                                 " evaluation devices:\n");
  for (size_t i = 0; i < run.accuracy.size(); ++i) {
    absl::StrAppend(&out, "  ", run.task_names[i], ":");
    for (double a : run.accuracy[i]) absl::StrAppend(&out, absl::StrFormat(" %.3f", a));
    absl::StrAppend(&out, "\n");
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> ReportClDevices(const base::FileSystem& fs, const std::string& dir) {
  FEDCL_ASSIGN_OR_RETURN(std::vector<v1::ClDeviceReport> reports, ReadReports(fs, dir));
  ClRunResult run;
  std::vector<std::vector<double>> sum;
  int evaluators = 0;
  std::string devices;
  for (const v1::ClDeviceReport& r : reports) {
    run.bytes_up += r.bytes_up();  // over every device, as the in-process runs count them
    run.bytes_down += r.bytes_down();
    run.seconds = std::max(run.seconds, r.seconds());
    absl::StrAppend(&devices, "  device ", r.device(), ": ", r.adapters(), " adapters, ",
                    r.submissions(), " submissions, ", r.growth_refusals(), " growths refused\n");
    if (r.rows_size() == 0) continue;
    FEDCL_RETURN_IF_ERROR(AddMatrix(r, run, sum));
    ++evaluators;
  }
  if (evaluators == 0) return absl::NotFoundError(absl::StrCat("no evaluation reports in ", dir));
  for (auto& row : sum)
    for (double& a : row) a /= evaluators;
  run.accuracy = sum;
  const std::vector<double> sizes(run.task_names.size(), 1.0);
  FEDCL_ASSIGN_OR_RETURN(run.metrics, cl::ComputeContinualMetrics(run.accuracy, sizes));
  return absl::StrCat(ClTextTable({run}), MatrixText(run, evaluators), "\n", devices);
}

}  // namespace fedcl::sim
