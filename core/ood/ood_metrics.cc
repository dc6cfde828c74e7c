#include "core/ood/ood_metrics.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"

namespace fedcl::ood {
namespace {

absl::Status CheckScores(absl::Span<const float> scores, const char* what) {
  if (scores.empty()) return absl::InvalidArgumentError(absl::StrCat("no ", what, " scores"));
  for (float s : scores) {
    if (!std::isfinite(s)) {
      return absl::InvalidArgumentError(absl::StrCat("a ", what, " score is not finite"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<double> Auroc(absl::Span<const float> id_scores,
                             absl::Span<const float> ood_scores) {
  if (absl::Status s = CheckScores(id_scores, "ID"); !s.ok()) return s;
  if (absl::Status s = CheckScores(ood_scores, "OOD"); !s.ok()) return s;
  // Mann-Whitney U over the merged, sorted scores: O((n + m) log(n + m)).
  std::vector<float> ood(ood_scores.begin(), ood_scores.end());
  std::sort(ood.begin(), ood.end());
  double wins = 0.0;
  for (float s : id_scores) {
    const auto lower = std::lower_bound(ood.begin(), ood.end(), s);
    const auto upper = std::upper_bound(lower, ood.end(), s);
    wins += static_cast<double>(ood.end() - upper) + 0.5 * static_cast<double>(upper - lower);
  }
  return wins / (static_cast<double>(id_scores.size()) * static_cast<double>(ood.size()));
}

absl::StatusOr<float> CalibratedThreshold(absl::Span<const float> id_scores, double tpr) {
  if (absl::Status s = CheckScores(id_scores, "ID"); !s.ok()) return s;
  if (!(tpr > 0.0 && tpr <= 1.0)) return absl::InvalidArgumentError("tpr must be in (0, 1]");
  std::vector<float> sorted(id_scores.begin(), id_scores.end());
  std::sort(sorted.begin(), sorted.end());
  // The smallest k with k / n >= tpr, then the k-th smallest score.
  const size_t k = static_cast<size_t>(std::ceil(tpr * static_cast<double>(sorted.size()) - 1e-9));
  return sorted[std::max<size_t>(k, 1) - 1];
}

absl::StatusOr<double> FprAt95Tpr(absl::Span<const float> id_scores,
                                  absl::Span<const float> ood_scores) {
  if (absl::Status s = CheckScores(ood_scores, "OOD"); !s.ok()) return s;
  absl::StatusOr<float> threshold = CalibratedThreshold(id_scores, 0.95);
  if (!threshold.ok()) return threshold.status();
  size_t accepted = 0;
  for (float s : ood_scores) accepted += s <= *threshold ? 1 : 0;
  return static_cast<double>(accepted) / static_cast<double>(ood_scores.size());
}

}  // namespace fedcl::ood
