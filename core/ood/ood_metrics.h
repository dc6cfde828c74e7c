// Scoring out-of-distribution detection (algorithms.md §9.3): OOD scores are "larger = more
// unusual", in-distribution (ID) is the positive class.
//
//   AUROC    P(score of a random ID sample < score of a random OOD sample), ties counting half:
//            1 separates perfectly, 0.5 is chance.
//   FPR@95   with the threshold that keeps 95% of ID samples (TPR = 0.95), the fraction of OOD
//            samples that are kept too (scored at or below it).
//   Threshold95(id)   the calibrated threshold: the smallest score τ with at least 95% of the
//            ID calibration scores <= τ. A sample is flagged OOD when its score is > τ.
#ifndef FEDCL_CORE_OOD_OOD_METRICS_H_
#define FEDCL_CORE_OOD_OOD_METRICS_H_

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace fedcl::ood {

// InvalidArgument if either side is empty or holds a non-finite score.
absl::StatusOr<double> Auroc(absl::Span<const float> id_scores, absl::Span<const float> ood_scores);
absl::StatusOr<double> FprAt95Tpr(absl::Span<const float> id_scores,
                                  absl::Span<const float> ood_scores);
// The threshold at true-positive rate `tpr` in (0, 1] (0.95 by default).
absl::StatusOr<float> CalibratedThreshold(absl::Span<const float> id_scores, double tpr = 0.95);

}  // namespace fedcl::ood

#endif  // FEDCL_CORE_OOD_OOD_METRICS_H_
