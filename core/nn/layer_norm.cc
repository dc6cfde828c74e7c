#include "core/nn/layer_norm.h"

#include "core/nn/init.h"

namespace fedcl::nn {

LayerNorm::LayerNorm(ParameterSet& params, const std::string& name, int dim, float eps)
    : dim_(dim), eps_(eps) {
  weight_ = AddParam(params, name + ".weight", {dim}, true);
  bias_ = AddParam(params, name + ".bias", {dim}, true);
  InitConstant(weight_, 1.0f);
}

void LayerNorm::Forward(ConstMatrixRef x, Matrix& y) {
  const Eigen::Index rows = x.rows();
  EnsureShape(normalized_, rows, dim_);
  rstd_.resize(rows);
  const float inv_dim = 1.0f / dim_;
  for (Eigen::Index r = 0; r < rows; ++r) {
    auto xr = x.row(r);
    float mean = xr.sum() * inv_dim;
    auto centered = normalized_.row(r);
    centered = xr.array() - mean;
    float var = centered.squaredNorm() * inv_dim;
    float rstd = 1.0f / std::sqrt(var + eps_);
    centered *= rstd;
    rstd_[r] = rstd;
  }
  EnsureShape(y, rows, dim_);
  y.array() = normalized_.array().rowwise() * weight_.row().array();
  y.rowwise() += bias_.row();
}

void LayerNorm::Backward(ConstMatrixRef dy, Matrix* dx) {
  if (weight_.trainable()) AddColumnSumsOfProduct(dy, normalized_, weight_.grad_row());
  if (bias_.trainable()) AddColumnSums(dy, bias_.grad_row());
  if (dx == nullptr) return;
  // dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)), with dx̂ = dy ⊙ w.
  const Eigen::Index rows = dy.rows();
  EnsureShape(dnormalized_, rows, dim_);
  dnormalized_.array() = dy.array().rowwise() * weight_.row().array();
  EnsureShape(*dx, rows, dim_);
  const float inv_dim = 1.0f / dim_;
  for (Eigen::Index r = 0; r < rows; ++r) {
    auto g = dnormalized_.row(r);
    auto xh = normalized_.row(r);
    float mean_g = g.sum() * inv_dim;
    float mean_gx = g.dot(xh) * inv_dim;
    dx->row(r) = rstd_[r] * (g.array() - mean_g - xh.array() * mean_gx).matrix();
  }
}

void LayerNorm::FoldScaleShift(const float* gamma, const float* beta) {
  ConstRowVectorMap g(gamma, dim_);
  weight_.row() = weight_.row().cwiseProduct(g);
  bias_.row() = bias_.row().cwiseProduct(g) + ConstRowVectorMap(beta, dim_);
}

}  // namespace fedcl::nn
