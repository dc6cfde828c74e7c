// Continual-learning metrics (algorithms.md §9.3) from an accuracy matrix: a(i, j) = accuracy on
// task j's test data after training on tasks 0..i (entries with j > i are unused).
//
//   A_t   accuracy on the test data of every class seen up to task t, after task t: the
//         sample-weighted mean of a(t, 0..t) (pass each task's test-set size as its weight).
//   Ā     average incremental accuracy, (1/T) Σ_t A_t;   A_T  the last A_t.
//   F_T   forgetting: mean over tasks j < T−1 of (best earlier accuracy max_{j<=i<T−1} a(i, j)
//         minus final accuracy a(T−1, j)).
//   BWT   backward transfer: mean over j < T−1 of a(T−1, j) − a(j, j) (negative = forgetting).
// With one task, F_T and BWT are 0.
#ifndef FEDCL_CORE_CL_CL_METRICS_H_
#define FEDCL_CORE_CL_CL_METRICS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace fedcl::cl {

struct ContinualMetrics {
  std::vector<double> incremental;  // A_t, t = 0..T−1
  double average_incremental = 0;   // Ā
  double last = 0;                  // A_T
  double forgetting = 0;            // F_T
  double backward_transfer = 0;     // BWT
};

// `accuracy` is T × T (row i = after task i); `task_sizes` has T positive weights.
// InvalidArgument for a ragged matrix, an entry outside [0, 1] on or below the diagonal, or a
// non-positive size.
absl::StatusOr<ContinualMetrics> ComputeContinualMetrics(
    const std::vector<std::vector<double>>& accuracy, absl::Span<const double> task_sizes);

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_CL_METRICS_H_
