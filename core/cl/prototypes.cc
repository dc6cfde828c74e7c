#include "core/cl/prototypes.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace fedcl::cl {

absl::Status PrototypeClassifier::AddClasses(const nn::Matrix& features,
                                             absl::Span<const int32_t> labels) {
  if (features.cols() != dim_ || features.rows() != static_cast<int64_t>(labels.size())) {
    return absl::InvalidArgumentError(absl::StrCat("features are ", features.rows(), "×",
                                                   features.cols(), " for ", labels.size(),
                                                   " labels of dimension ", dim_));
  }
  if (labels.empty()) return absl::OkStatus();
  if (*std::min_element(labels.begin(), labels.end()) < 0) {
    return absl::InvalidArgumentError("negative label");
  }
  const int top = *std::max_element(labels.begin(), labels.end()) + 1;
  if (top > classes()) {
    nn::Matrix grown = nn::Matrix::Zero(top, dim_);
    grown.topRows(classes()) = prototypes_;
    prototypes_ = std::move(grown);
    known_.resize(top, false);
  }
  nn::Matrix sums = nn::Matrix::Zero(top, dim_);
  std::vector<bool> present(top, false);
  for (size_t i = 0; i < labels.size(); ++i) {
    sums.row(labels[i]) += features.row(static_cast<int64_t>(i));
    present[labels[i]] = true;
  }
  for (int c = 0; c < top; ++c) {
    if (!present[c]) continue;
    // The mean's direction: cosine ignores the count.
    const float norm = sums.row(c).norm();
    prototypes_.row(c) = norm > 0 ? (sums.row(c) / norm).eval() : sums.row(c);
    known_[c] = true;
  }
  return absl::OkStatus();
}

absl::StatusOr<nn::Matrix> PrototypeClassifier::Similarities(const nn::Matrix& features) const {
  if (features.cols() != dim_) {
    return absl::InvalidArgumentError(
        absl::StrCat("features have ", features.cols(), " dimensions, expected ", dim_));
  }
  nn::Matrix similarity = features * prototypes_.transpose();
  for (int64_t i = 0; i < features.rows(); ++i) {
    const float norm = features.row(i).norm();
    if (norm > 0) similarity.row(i) /= norm;
  }
  for (int c = 0; c < classes(); ++c) {
    if (!known_[c]) similarity.col(c).setConstant(-2.0f);
  }
  return similarity;
}

absl::StatusOr<std::vector<int>> PrototypeClassifier::Predict(const nn::Matrix& features) const {
  if (classes() == 0) return absl::FailedPreconditionError("no class has been added");
  absl::StatusOr<nn::Matrix> similarity = Similarities(features);
  if (!similarity.ok()) return similarity.status();
  std::vector<int> labels(features.rows());
  for (int64_t i = 0; i < features.rows(); ++i) {
    Eigen::Index best = 0;
    similarity->row(i).maxCoeff(&best);
    labels[i] = static_cast<int>(best);
  }
  return labels;
}

}  // namespace fedcl::cl
