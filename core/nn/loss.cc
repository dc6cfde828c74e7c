#include "core/nn/loss.h"

#include <cmath>
#include <vector>

#include "core/base/status_macros.h"

namespace fedcl::nn {

void Softmax(ConstMatrixRef logits, Matrix& probs) {
  EnsureShape(probs, logits.rows(), logits.cols());
  for (Eigen::Index r = 0; r < logits.rows(); ++r) {
    float max = logits.row(r).maxCoeff();
    probs.row(r) = (logits.row(r).array() - max).exp().matrix();
    probs.row(r) /= probs.row(r).sum();
  }
}

float SoftmaxCrossEntropy(ConstMatrixRef logits, absl::Span<const int32_t> labels,
                          Matrix* dlogits) {
  const Eigen::Index n = logits.rows();
  FEDCL_CHECK(static_cast<Eigen::Index>(labels.size()) == n) << "one label per row";
  if (n == 0) return 0.0f;
  double total = 0.0;
  if (dlogits != nullptr) EnsureShape(*dlogits, n, logits.cols());
  const float inv_n = 1.0f / static_cast<float>(n);
  for (Eigen::Index r = 0; r < n; ++r) {
    const int32_t label = labels[r];
    FEDCL_CHECK(label >= 0 && label < logits.cols()) << "label " << label << " out of range";
    float max = logits.row(r).maxCoeff();
    float sum_exp = (logits.row(r).array() - max).exp().sum();
    float log_sum_exp = max + std::log(sum_exp);
    total += log_sum_exp - logits(r, label);
    if (dlogits != nullptr) {
      dlogits->row(r) = ((logits.row(r).array() - log_sum_exp).exp() * inv_n).matrix();
      (*dlogits)(r, label) -= inv_n;
    }
  }
  return static_cast<float>(total / n);
}

void ArgmaxRows(ConstMatrixRef m, std::vector<int32_t>& out) {
  out.resize(m.rows());
  for (Eigen::Index r = 0; r < m.rows(); ++r) {
    Eigen::Index best;
    m.row(r).maxCoeff(&best);
    out[r] = static_cast<int32_t>(best);
  }
}

}  // namespace fedcl::nn
