#include "core/cl/sample_filter.h"

#include <cmath>

#include "core/nn/loss.h"

namespace fedcl::cl {

std::vector<float> SampleFilter::Entropies(const nn::Matrix& p) {
  std::vector<float> entropy(p.rows());
  for (int64_t i = 0; i < p.rows(); ++i) {
    double e = 0;
    for (int64_t c = 0; c < p.cols(); ++c) {
      if (p(i, c) > 0) e -= p(i, c) * std::log(static_cast<double>(p(i, c)));
    }
    entropy[i] = static_cast<float>(e);
  }
  return entropy;
}

absl::StatusOr<std::vector<bool>> SampleFilter::Select(const nn::Matrix& logits) {
  if (logits.cols() < 2) return absl::InvalidArgumentError("need at least two classes");
  if (!logits.allFinite()) return absl::InvalidArgumentError("logits are not finite");
  nn::Matrix p;
  nn::Softmax(logits, p);
  const std::vector<float> entropy = Entropies(p);
  const double log_c = std::log(static_cast<double>(logits.cols()));
  const double high = options_.high_margin * log_c, low = options_.low_margin * log_c;
  std::vector<bool> keep(p.rows(), false);
  for (int64_t i = 0; i < p.rows(); ++i) {
    keep[i] = entropy[i] < high && (options_.low_margin <= 0 || entropy[i] > low);
  }
  const bool first = average_.size() == 0;
  if (!first && options_.redundancy > 0) {
    const float average_norm = average_.norm();
    for (int64_t i = 0; i < p.rows(); ++i) {
      if (!keep[i]) continue;
      const float cosine = average_.dot(p.row(i)) / (average_norm * p.row(i).norm());
      keep[i] = std::abs(cosine) < options_.redundancy;
    }
  }
  Eigen::RowVectorXf mean = Eigen::RowVectorXf::Zero(p.cols());
  int64_t count = 0;
  for (int64_t i = 0; i < p.rows(); ++i) {
    if (keep[i]) {
      mean += p.row(i);
      ++count;
    }
  }
  if (count > 0) {
    mean /= static_cast<float>(count);
    average_ = first ? mean
                     : Eigen::RowVectorXf(static_cast<float>(options_.momentum) * average_ +
                                          static_cast<float>(1 - options_.momentum) * mean);
  }
  seen_ += p.rows();
  kept_ += count;
  return keep;
}

}  // namespace fedcl::cl
