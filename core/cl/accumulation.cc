#include "core/cl/accumulation.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/nn/loss.h"

namespace fedcl::cl {

absl::StatusOr<double> DecayForFraction(double fraction, int64_t steps) {
  if (steps < 1) return absl::InvalidArgumentError("steps must be >= 1");
  if (!(fraction > 0.0 && fraction < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("fraction ", fraction, " is not in (0, 1)"));
  }
  return std::pow(1.0 - fraction, 1.0 / static_cast<double>(steps));
}

void EmaAccumulator::Start(const nn::ParameterSet& online) {
  offline_ = online;
  offline_.SetAllTrainable(false);  // never trained by gradient
}

absl::Status EmaAccumulator::Update(const nn::ParameterSet& online) {
  if (!started()) return absl::FailedPreconditionError("the offline module has not started");
  FEDCL_RETURN_IF_ERROR(offline_.CheckSameLayout(online));
  const float a = static_cast<float>(decay_);
  offline_.flat_values() = a * offline_.flat_values() + (1.0f - a) * online.flat_values();
  return absl::OkStatus();
}

absl::StatusOr<EnsemblePrediction> MaxSoftmaxEnsemble(const nn::Matrix& online_logits,
                                                      const nn::Matrix& offline_logits) {
  if (online_logits.rows() != offline_logits.rows() ||
      online_logits.cols() != offline_logits.cols()) {
    return absl::InvalidArgumentError("the two experts' logits differ in shape");
  }
  EnsemblePrediction out;
  const int64_t n = online_logits.rows();
  out.label.resize(n);
  out.confidence.resize(n);
  nn::Matrix online, offline;
  nn::Softmax(online_logits, online);
  nn::Softmax(offline_logits, offline);
  for (int64_t i = 0; i < n; ++i) {
    const Eigen::RowVectorXf p = online.row(i).cwiseMax(offline.row(i));
    Eigen::Index best = 0;
    out.confidence[i] = p.maxCoeff(&best);
    out.label[i] = static_cast<int>(best);
  }
  return out;
}

}  // namespace fedcl::cl
