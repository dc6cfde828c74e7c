#include "core/cl/adapter_mixture.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/cl/sema.h"

namespace fedcl::cl {
namespace {

Eigen::Map<const nn::Matrix> Mat(const nn::ParameterSet& s, int t, int rows, int cols) {
  return Eigen::Map<const nn::Matrix>(s.values(t), rows, cols);
}
Eigen::Map<const Eigen::RowVectorXf> Row(const nn::ParameterSet& s, int t) {
  return Eigen::Map<const Eigen::RowVectorXf>(s.values(t), s.info(t).size);
}

}  // namespace

nn::ParameterSet NewExpert(const std::string& name, int dim, int bottleneck, base::Rng& rng) {
  nn::ParameterSet e(name);
  e.Add("down.weight", {bottleneck, dim}, true);
  e.Add("down.bias", {bottleneck}, true);
  e.Add("up.weight", {dim, bottleneck}, true);
  e.Add("up.bias", {dim}, true);
  e.Add("router.weight", {1, dim}, true);
  e.Add("router.bias", {1}, true);
  nn::Matrix down(bottleneck, dim), router(1, dim);
  InitLinearWeight(down, dim, rng);
  InitLinearWeight(router, dim, rng);
  std::copy(down.data(), down.data() + down.size(), e.values(kExpertDownWeight));
  std::copy(router.data(), router.data() + router.size(), e.values(kExpertRouterWeight));
  return e;
}

absl::StatusOr<int> AdapterMixture::AddExpert(nn::ParameterSet expert) {
  base::Rng unused(0);
  const nn::ParameterSet reference = NewExpert(expert.name(), dim_, bottleneck_, unused);
  if (absl::Status s = reference.CheckSameLayout(expert); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("expert '", expert.name(),
                                                   "' does not have the layout of a ", dim_, "→",
                                                   bottleneck_, " mixture expert: ", s.message()));
  }
  experts_.push_back(std::make_unique<nn::ParameterSet>(std::move(expert)));
  return experts() - 1;
}

int64_t AdapterMixture::expert_bytes() const {
  return static_cast<int64_t>(sizeof(float)) *
         (2 * int64_t{dim_} * bottleneck_ + bottleneck_ + 2 * int64_t{dim_} + 1);
}

bool AdapterMixture::HasTrainable() const {
  for (const auto& e : experts_)
    if (e->any_trainable()) return true;
  return false;
}

void AdapterMixture::ForwardAdd(nn::ConstMatrixRef x, nn::ConstMatrixRef block_input, int batch,
                                int tokens, nn::MatrixRef out) {
  const int m = experts();
  batch_ = batch;
  tokens_ = tokens;
  rows_per_sample_ = static_cast<int>(x.rows() / batch);
  x_ = x;
  z_.resize(batch, dim_);
  for (int b = 0; b < batch; ++b)
    z_.row(b) = block_input.middleRows(int64_t{b} * tokens, tokens).colwise().mean();
  // Router logits, then a row-wise softmax.
  weights_.resize(batch, m);
  for (int i = 0; i < m; ++i) {
    weights_.col(i) = z_ * Row(*experts_[i], kExpertRouterWeight).transpose();
    weights_.col(i).array() += experts_[i]->values(kExpertRouterBias)[0];
  }
  for (int b = 0; b < batch; ++b) {
    const float top = weights_.row(b).maxCoeff();
    weights_.row(b) = (weights_.row(b).array() - top).exp().matrix();
    weights_.row(b) /= weights_.row(b).sum();
  }
  hidden_.resize(m);
  expert_out_.resize(m);
  const int r = bottleneck_;
  for (int i = 0; i < m; ++i) {
    const nn::ParameterSet& e = *experts_[i];
    hidden_[i].noalias() = x * Mat(e, kExpertDownWeight, r, dim_).transpose();
    hidden_[i].rowwise() += Row(e, kExpertDownBias);
    hidden_[i] = hidden_[i].cwiseMax(0.0f);
    expert_out_[i].noalias() = hidden_[i] * Mat(e, kExpertUpWeight, dim_, r).transpose();
    expert_out_[i].rowwise() += Row(e, kExpertUpBias);
    for (int b = 0; b < batch; ++b) {
      const int64_t first = int64_t{b} * rows_per_sample_;
      out.middleRows(first, rows_per_sample_) +=
          weights_(b, i) * expert_out_[i].middleRows(first, rows_per_sample_);
    }
  }
}

void AdapterMixture::Backward(nn::ConstMatrixRef da, nn::Matrix* dx) {
  const int m = experts();
  const int r = bottleneck_;
  const int rows = rows_per_sample_;
  // dL/dw_{b,i} = Σ over sample b's rows of da ⊙ A_i(x).
  nn::Matrix dweights(batch_, m);
  nn::Matrix dout(x_.rows(), dim_);
  for (int i = 0; i < m; ++i) {
    nn::ParameterSet& e = *experts_[i];
    for (int b = 0; b < batch_; ++b) {
      const int64_t first = int64_t{b} * rows;
      dweights(b, i) =
          (da.middleRows(first, rows).array() * expert_out_[i].middleRows(first, rows).array())
              .sum();
    }
    const bool trainable = e.trainable(kExpertDownWeight) || e.trainable(kExpertDownBias) ||
                           e.trainable(kExpertUpWeight) || e.trainable(kExpertUpBias);
    if (!trainable && dx == nullptr) continue;
    for (int b = 0; b < batch_; ++b) {
      const int64_t first = int64_t{b} * rows;
      dout.middleRows(first, rows) = weights_(b, i) * da.middleRows(first, rows);
    }
    if (e.trainable(kExpertUpWeight))
      Eigen::Map<nn::Matrix>(e.grads(kExpertUpWeight), dim_, r).noalias() +=
          dout.transpose() * hidden_[i];
    if (e.trainable(kExpertUpBias))
      Eigen::Map<Eigen::RowVectorXf>(e.grads(kExpertUpBias), dim_) += dout.colwise().sum();
    const nn::Matrix dhidden =
        (hidden_[i].array() > 0.0f).select(dout * Mat(e, kExpertUpWeight, dim_, r), 0.0f);
    if (e.trainable(kExpertDownWeight))
      Eigen::Map<nn::Matrix>(e.grads(kExpertDownWeight), r, dim_).noalias() +=
          dhidden.transpose() * x_;
    if (e.trainable(kExpertDownBias))
      Eigen::Map<Eigen::RowVectorXf>(e.grads(kExpertDownBias), r) += dhidden.colwise().sum();
    if (dx != nullptr) dx->noalias() += dhidden * Mat(e, kExpertDownWeight, r, dim_);
  }
  // Softmax: dlogit_{b,j} = w_{b,j} (dw_{b,j} − Σ_i w_{b,i} dw_{b,i}).
  nn::Matrix dlogits(batch_, m);
  for (int b = 0; b < batch_; ++b) {
    const float dot = weights_.row(b).dot(dweights.row(b));
    dlogits.row(b) = (weights_.row(b).array() * (dweights.row(b).array() - dot)).matrix();
  }
  dz_ = nn::Matrix::Zero(batch_, dim_);
  for (int i = 0; i < m; ++i) {
    nn::ParameterSet& e = *experts_[i];
    if (e.trainable(kExpertRouterWeight))
      Eigen::Map<Eigen::RowVectorXf>(e.grads(kExpertRouterWeight), dim_) +=
          dlogits.col(i).transpose() * z_;
    if (e.trainable(kExpertRouterBias)) e.grads(kExpertRouterBias)[0] += dlogits.col(i).sum();
    dz_.noalias() += dlogits.col(i) * Row(e, kExpertRouterWeight);
  }
}

void AdapterMixture::AddBlockInputGradient(nn::MatrixRef dblock_input) const {
  // z_b is the mean of sample b's tokens: each token gets dz_b / tokens.
  for (int b = 0; b < batch_; ++b) {
    dblock_input.middleRows(int64_t{b} * tokens_, tokens_).rowwise() +=
        dz_.row(b) / static_cast<float>(tokens_);
  }
}

}  // namespace fedcl::cl
