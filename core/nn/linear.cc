#include "core/nn/linear.h"

#include <cmath>

#include "core/base/status_macros.h"
#include "core/nn/init.h"

namespace fedcl::nn {

Linear::Linear(ParameterSet& params, const std::string& name, int in_features, int out_features,
               bool bias)
    : name_(name), in_(in_features), out_(out_features) {
  weight_ = AddParam(params, name + ".weight", {out_features, in_features}, true);
  if (bias) bias_ = AddParam(params, name + ".bias", {out_features}, true);
}

void Linear::InitDefault(base::Rng& rng) {
  InitKaimingUniform(weight_, in_, rng);
  if (bias_.bound()) {
    double bound = 1.0 / std::sqrt(static_cast<double>(in_));
    InitUniform(bias_, -bound, bound, rng);
  }
}

void Linear::InitKaimingNormal(base::Rng& rng) {
  nn::InitKaimingNormal(weight_, in_, rng);
  if (bias_.bound()) InitConstant(bias_, 0.0f);
}

void Linear::Forward(ConstMatrixRef x, Matrix& y) {
  auto w = weight_.matrix(out_, in_);
  EnsureShape(y, x.rows(), out_);
  // Eigen zeroes a product's destination before accumulating into it; starting from the bias
  // instead saves that pass and the separate bias addition.
  if (bias_.bound()) {
    y.rowwise() = bias_.row();
    y.noalias() += x * w.transpose();
  } else {
    y.noalias() = x * w.transpose();
  }
  if (has_lora()) {
    auto a = lora_.a.matrix(lora_.rank, in_);
    auto b = lora_.b.matrix(out_, lora_.rank);
    EnsureShape(lora_hidden_, x.rows(), lora_.rank);
    lora_hidden_.noalias() = x * a.transpose();
    y.noalias() += lora_.scale * (lora_hidden_ * b.transpose());
  }
}

void Linear::Backward(ConstMatrixRef x, ConstMatrixRef dy, Matrix* dx) {
  auto w = weight_.matrix(out_, in_);
  if (weight_.trainable()) weight_.grad_matrix(out_, in_).noalias() += dy.transpose() * x;
  if (bias_.trainable()) AddColumnSums(dy, bias_.grad_row());
  if (dx != nullptr) {
    EnsureShape(*dx, dy.rows(), in_);
    dx->noalias() = dy * w;
  }
  if (!has_lora()) return;
  auto a = lora_.a.matrix(lora_.rank, in_);
  auto b = lora_.b.matrix(out_, lora_.rank);
  // h = x·Aᵀ, y += s·h·Bᵀ  ⇒  dB = s·dyᵀ·h, dh = s·dy·B, dA = dhᵀ·x, dx += dh·A.
  if (lora_.b.trainable()) {
    lora_.b.grad_matrix(out_, lora_.rank).noalias() +=
        lora_.scale * (dy.transpose() * lora_hidden_);
  }
  if (!lora_.a.trainable() && dx == nullptr) return;
  EnsureShape(lora_dhidden_, dy.rows(), lora_.rank);
  lora_dhidden_.noalias() = lora_.scale * (dy * b);
  if (lora_.a.trainable())
    lora_.a.grad_matrix(lora_.rank, in_).noalias() += lora_dhidden_.transpose() * x;
  if (dx != nullptr) dx->noalias() += lora_dhidden_ * a;
}

void Linear::MergeLora() {
  if (!has_lora()) return;
  auto a = lora_.a.matrix(lora_.rank, in_);
  auto b = lora_.b.matrix(out_, lora_.rank);
  weight_.matrix(out_, in_).noalias() += lora_.scale * (b * a);
  DetachLora();
}

void Linear::FoldScaleShift(const float* gamma, const float* beta) {
  ConstRowVectorMap g(gamma, out_);
  auto w = weight_.matrix(out_, in_);
  w = g.transpose().asDiagonal() * w;
  // Callers (peft) refuse to fold while a LoRA branch is attached: the fold would have to
  // rewrite the other module's B as well.
  FEDCL_CHECK(!has_lora()) << "fold into " << name_ << " with a LoRA branch attached";
  FEDCL_CHECK(bias_.bound()) << "folding a shift needs a bias in " << name_;
  bias_.row() = bias_.row().cwiseProduct(g) + ConstRowVectorMap(beta, out_);
}

bool Linear::HasTrainable() const {
  return weight_.trainable() || bias_.trainable() || lora_.a.trainable() || lora_.b.trainable();
}

}  // namespace fedcl::nn
