#include "core/cl/adapter_mixture.h"

#include <cmath>

namespace fedcl::cl {
namespace {

Adapter ZeroFunctionAdapter(int dim, int bottleneck, base::Rng& rng) {
  Adapter a;
  a.down.resize(bottleneck, dim);
  InitLinearWeight(a.down, dim, rng);
  a.down_b = Eigen::VectorXf::Zero(bottleneck);
  a.up = nn::Matrix::Zero(dim, bottleneck);
  a.up_b = Eigen::VectorXf::Zero(dim);
  return a;
}

}  // namespace

AdapterMixture::AdapterMixture(int dim, int bottleneck, base::Rng& rng)
    : dim_(dim), bottleneck_(bottleneck), router_(dim, rng) {
  experts_.push_back(ZeroFunctionAdapter(dim, bottleneck, rng));
}

int AdapterMixture::AddExpert(base::Rng& rng) {
  experts_.push_back(ZeroFunctionAdapter(dim_, bottleneck_, rng));
  router_.AddExpert(rng);
  return experts() - 1;
}

const nn::Matrix& AdapterMixture::Forward(const nn::Matrix& x, int batch, int tokens) {
  batch_ = batch;
  tokens_ = tokens;
  x_ = x;
  z_.resize(batch, dim_);
  for (int b = 0; b < batch; ++b)
    z_.row(b) = x.middleRows(static_cast<int64_t>(b) * tokens, tokens).colwise().mean();
  weights_ = router_.Weights(z_);
  output_ = nn::Matrix::Zero(x.rows(), dim_);
  hidden_.resize(experts_.size());
  expert_out_.resize(experts_.size());
  for (size_t i = 0; i < experts_.size(); ++i) {
    const Adapter& a = experts_[i];
    hidden_[i] = ((x * a.down.transpose()).rowwise() + a.down_b.transpose()).cwiseMax(0.0f);
    expert_out_[i] = (hidden_[i] * a.up.transpose()).rowwise() + a.up_b.transpose();
    for (int b = 0; b < batch; ++b) {
      output_.middleRows(static_cast<int64_t>(b) * tokens, tokens) +=
          weights_(b, static_cast<int64_t>(i)) *
          expert_out_[i].middleRows(static_cast<int64_t>(b) * tokens, tokens);
    }
  }
  return output_;
}

void AdapterMixture::Backward(const nn::Matrix& da, AdapterGradients* g, nn::Matrix* dx) const {
  const int m = experts();
  g->experts.resize(m);
  *dx = nn::Matrix::Zero(x_.rows(), dim_);
  // dL/dw_{b,i} = Σ_tokens da ⊙ A_i(x).
  nn::Matrix dweights(batch_, m);
  for (int i = 0; i < m; ++i) {
    const Adapter& a = experts_[i];
    nn::Matrix dout(x_.rows(), dim_);  // gradient at A_i's output: w_{b,i}·da
    for (int b = 0; b < batch_; ++b) {
      const auto rows = [&](const nn::Matrix& mat) {
        return mat.middleRows(static_cast<int64_t>(b) * tokens_, tokens_);
      };
      dweights(b, i) = (rows(da).array() * rows(expert_out_[i]).array()).sum();
      dout.middleRows(static_cast<int64_t>(b) * tokens_, tokens_) = weights_(b, i) * rows(da);
    }
    Adapter& ga = g->experts[i];
    ga.up = dout.transpose() * hidden_[i];
    ga.up_b = dout.colwise().sum().transpose();
    const nn::Matrix dhidden =
        ((dout * a.up).array() * (hidden_[i].array() > 0.0f).cast<float>()).matrix();
    ga.down = dhidden.transpose() * x_;
    ga.down_b = dhidden.colwise().sum().transpose();
    *dx += dhidden * a.down;
  }
  // Softmax: dlogit_{b,j} = w_{b,j} (dw_{b,j} − Σ_i w_{b,i} dw_{b,i}).
  nn::Matrix dlogits(batch_, m);
  for (int b = 0; b < batch_; ++b) {
    const float dot = weights_.row(b).dot(dweights.row(b));
    dlogits.row(b) = (weights_.row(b).array() * (dweights.row(b).array() - dot)).matrix();
  }
  g->router = dlogits.transpose() * z_;
  g->router_b = dlogits.colwise().sum().transpose();
  // Through z_b = mean of its tokens: every token of sample b gets dz_b / tokens.
  const nn::Matrix dz = dlogits * router_.weights();
  for (int b = 0; b < batch_; ++b) {
    dx->middleRows(static_cast<int64_t>(b) * tokens_, tokens_).rowwise() +=
        dz.row(b) / static_cast<float>(tokens_);
  }
}

}  // namespace fedcl::cl
