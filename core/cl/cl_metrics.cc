#include "core/cl/cl_metrics.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace fedcl::cl {

absl::StatusOr<ContinualMetrics> ComputeContinualMetrics(
    const std::vector<std::vector<double>>& accuracy, absl::Span<const double> task_sizes) {
  const size_t tasks = accuracy.size();
  if (tasks == 0) return absl::InvalidArgumentError("no tasks");
  if (task_sizes.size() != tasks) {
    return absl::InvalidArgumentError(
        absl::StrCat(task_sizes.size(), " task sizes for ", tasks, " tasks"));
  }
  for (size_t i = 0; i < tasks; ++i) {
    if (accuracy[i].size() != tasks) {
      return absl::InvalidArgumentError(
          absl::StrCat("row ", i, " has ", accuracy[i].size(), " entries, expected ", tasks));
    }
    if (!(task_sizes[i] > 0)) {
      return absl::InvalidArgumentError(absl::StrCat("task ", i, " has size ", task_sizes[i]));
    }
    for (size_t j = 0; j <= i; ++j) {
      if (!(accuracy[i][j] >= 0.0 && accuracy[i][j] <= 1.0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("accuracy(", i, ", ", j, ") = ", accuracy[i][j], " is not in [0, 1]"));
      }
    }
  }
  ContinualMetrics m;
  for (size_t t = 0; t < tasks; ++t) {
    double weighted = 0, weight = 0;
    for (size_t j = 0; j <= t; ++j) {
      weighted += accuracy[t][j] * task_sizes[j];
      weight += task_sizes[j];
    }
    m.incremental.push_back(weighted / weight);
  }
  for (double a : m.incremental) m.average_incremental += a / static_cast<double>(tasks);
  m.last = m.incremental.back();
  if (tasks > 1) {
    const size_t last = tasks - 1;
    for (size_t j = 0; j < last; ++j) {
      double best = 0;
      for (size_t i = j; i < last; ++i) best = std::max(best, accuracy[i][j]);
      m.forgetting += (best - accuracy[last][j]) / static_cast<double>(last);
      m.backward_transfer += (accuracy[last][j] - accuracy[j][j]) / static_cast<double>(last);
    }
  }
  return m;
}

}  // namespace fedcl::cl
