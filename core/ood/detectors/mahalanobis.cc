// mahalanobis (algorithms.md §8.4, Lee et al. 2018): class means and one shared covariance of the
// head's input features, u = min_c (z − μ_c)ᵀ Σ⁻¹ (z − μ_c), with no input pre-processing and no
// layer ensemble. Fit needs labels, at least one sample per class seen and d + 1 samples; a
// singular covariance gets a ridge of 1e-6 times its mean variance. No options.
#include <algorithm>
#include <limits>
#include <memory>

#include "Eigen/Cholesky"
#include "core/base/status_macros.h"
#include "core/ood/detector_support.h"

namespace fedcl::ood {
namespace {

class MahalanobisDetector final : public OodDetector {
 public:
  static absl::StatusOr<std::unique_ptr<OodDetector>> Create(const DetectorContext& context) {
    FEDCL_ASSIGN_OR_RETURN(base::OptionText text, ParseOptions(context, "mahalanobis"));
    FEDCL_RETURN_IF_ERROR(FinishOptions(text, "mahalanobis", ""));
    return std::make_unique<MahalanobisDetector>();
  }
  absl::string_view name() const override { return "mahalanobis"; }
  absl::Status Fit(const OodBatch& batch, absl::Span<const int32_t> labels) override;
  absl::StatusOr<std::vector<float>> Score(const OodBatch& batch) const override;

 private:
  Eigen::MatrixXd means_;      // C × d (classes without samples are skipped)
  Eigen::MatrixXd precision_;  // d × d
  std::vector<int> classes_;   // rows of means_ in use
};

absl::Status MahalanobisDetector::Fit(const OodBatch& batch, absl::Span<const int32_t> labels) {
  if (absl::Status s = NeedMatrix(batch.features, "features", name()); !s.ok()) return s;
  const nn::Matrix& z = *batch.features;
  if (absl::Status s = CheckLabels(labels, z.rows()); !s.ok()) return s;
  const int64_t d = z.cols();
  if (z.rows() <= d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mahalanobis: ", z.rows(), " samples cannot fit a ", d, "-dimensional covariance"));
  }
  const int classes = *std::max_element(labels.begin(), labels.end()) + 1;
  Eigen::MatrixXd sums = Eigen::MatrixXd::Zero(classes, d);
  std::vector<int64_t> counts(classes, 0);
  for (int64_t i = 0; i < z.rows(); ++i) {
    sums.row(labels[i]) += z.row(i).cast<double>();
    ++counts[labels[i]];
  }
  classes_.clear();
  for (int c = 0; c < classes; ++c) {
    if (counts[c] > 0) classes_.push_back(c);
  }
  means_.resize(static_cast<int64_t>(classes_.size()), d);
  for (size_t k = 0; k < classes_.size(); ++k)
    means_.row(k) = sums.row(classes_[k]) / static_cast<double>(counts[classes_[k]]);
  // Shared covariance of the class-centred features (1/n, as sklearn's EmpiricalCovariance).
  Eigen::MatrixXd centred(z.rows(), d);
  std::vector<int> row_of(classes, -1);
  for (size_t k = 0; k < classes_.size(); ++k) row_of[classes_[k]] = static_cast<int>(k);
  for (int64_t i = 0; i < z.rows(); ++i)
    centred.row(i) = z.row(i).cast<double>() - means_.row(row_of[labels[i]]);
  Eigen::MatrixXd covariance = centred.transpose() * centred / static_cast<double>(z.rows());
  const double ridge = 1e-6 * std::max(covariance.trace() / static_cast<double>(d), 1e-12);
  covariance.diagonal().array() += ridge;
  Eigen::LDLT<Eigen::MatrixXd> ldlt(covariance);
  if (ldlt.info() != Eigen::Success) {
    return absl::InvalidArgumentError("mahalanobis: the feature covariance cannot be inverted");
  }
  precision_ = ldlt.solve(Eigen::MatrixXd::Identity(d, d));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> MahalanobisDetector::Score(const OodBatch& batch) const {
  if (precision_.size() == 0) return absl::FailedPreconditionError("mahalanobis: not fitted");
  if (absl::Status s = NeedMatrix(batch.features, "features", name()); !s.ok()) return s;
  const nn::Matrix& z = *batch.features;
  if (z.cols() != precision_.rows()) {
    return absl::InvalidArgumentError(absl::StrCat("mahalanobis: features have ", z.cols(),
                                                   " dimensions, fitted on ", precision_.rows()));
  }
  const Eigen::MatrixXd zd = z.cast<double>();
  Eigen::VectorXd best = Eigen::VectorXd::Constant(z.rows(), std::numeric_limits<double>::max());
  for (int64_t k = 0; k < means_.rows(); ++k) {
    const Eigen::MatrixXd diff = zd.rowwise() - means_.row(k);
    const Eigen::VectorXd distance = ((diff * precision_).array() * diff.array()).rowwise().sum();
    best = best.cwiseMin(distance);
  }
  std::vector<float> scores(z.rows());
  for (int64_t i = 0; i < z.rows(); ++i) scores[i] = static_cast<float>(best[i]);
  return scores;
}

}  // namespace

FEDCL_REGISTER_OOD_DETECTOR(mahalanobis,
                            {.description = "smallest Mahalanobis distance to a class mean under "
                                            "one shared covariance (Lee et al. 2018)",
                             .needs = {.features = true},
                             .fit_needs_labels = true,
                             .create = &MahalanobisDetector::Create})

}  // namespace fedcl::ood
