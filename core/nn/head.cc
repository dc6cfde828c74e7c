#include "core/nn/head.h"

#include "core/nn/init.h"

namespace fedcl::nn {
namespace {

constexpr float kNormEpsilon = 1e-8f;

// Row-normalises `m` into `unit`, keeping the norms.
void NormalizeRows(ConstMatrixRef m, Matrix& unit, Vector& norms) {
  EnsureShape(unit, m.rows(), m.cols());
  norms = m.rowwise().norm().cwiseMax(kNormEpsilon);
  unit = norms.cwiseInverse().asDiagonal() * m;
}

// Gradient through u = v/‖v‖ for each row: dv = (du − u·(u·du)) / ‖v‖.
void BackwardNormalize(ConstMatrixRef unit, const Vector& norms, ConstMatrixRef dunit, MatrixRef dv,
                       bool accumulate) {
  Vector dots = unit.cwiseProduct(dunit).rowwise().sum();
  Matrix result = norms.cwiseInverse().asDiagonal() * (dunit - dots.asDiagonal() * unit);
  if (accumulate) {
    dv += result;
  } else {
    dv = result;
  }
}

}  // namespace

LinearHead::LinearHead(int feature_dim, int num_classes, base::Rng& rng)
    : Head(feature_dim, num_classes), fc_(params_, "head", feature_dim, num_classes) {
  fc_.InitDefault(rng);
}

const Matrix& LinearHead::Forward(ConstMatrixRef features) {
  fc_.Forward(features, logits_);
  return logits_;
}

void LinearHead::Backward(ConstMatrixRef features, ConstMatrixRef dlogits, Matrix* dfeatures) {
  fc_.Backward(features, dlogits, dfeatures);
}

CosineHead::CosineHead(int feature_dim, int num_classes, base::Rng& rng)
    : Head(feature_dim, num_classes) {
  weight_ = AddParam(params_, "head.weight", {num_classes, feature_dim}, true);
  scale_ = AddParam(params_, "head.scale", {1}, true);
  InitKaimingUniform(weight_, feature_dim, rng);
  InitConstant(scale_, 16.0f);
}

void CosineHead::SetPrototype(int c, const float* prototype) {
  weight_.matrix(num_classes_, feature_dim_).row(c) = ConstRowVectorMap(prototype, feature_dim_);
}

const Matrix& CosineHead::Forward(ConstMatrixRef features) {
  NormalizeRows(features, unit_features_, feature_norms_);
  NormalizeRows(weight_.matrix(num_classes_, feature_dim_), unit_weights_, weight_norms_);
  EnsureShape(cosines_, features.rows(), num_classes_);
  cosines_.noalias() = unit_features_ * unit_weights_.transpose();
  logits_ = scale_.value()[0] * cosines_;
  return logits_;
}

void CosineHead::Backward(ConstMatrixRef features, ConstMatrixRef dlogits, Matrix* dfeatures) {
  const float sigma = scale_.value()[0];
  if (scale_.trainable()) scale_.grad()[0] += dlogits.cwiseProduct(cosines_).sum();
  if (weight_.trainable()) {
    // cos = û·ŵᵀ ⇒ dŵ = σ·dlogitsᵀ·û.
    dunit_weights_.noalias() = sigma * (dlogits.transpose() * unit_features_);
    BackwardNormalize(unit_weights_, weight_norms_, dunit_weights_,
                      weight_.grad_matrix(num_classes_, feature_dim_), /*accumulate=*/true);
  }
  if (dfeatures != nullptr) {
    dunit_.noalias() = sigma * (dlogits * unit_weights_);
    EnsureShape(*dfeatures, features.rows(), feature_dim_);
    BackwardNormalize(unit_features_, feature_norms_, dunit_, *dfeatures, /*accumulate=*/false);
  }
}

std::unique_ptr<Head> CreateHead(HeadKind kind, int feature_dim, int num_classes, base::Rng& rng) {
  if (kind == HeadKind::kCosine) return std::make_unique<CosineHead>(feature_dim, num_classes, rng);
  return std::make_unique<LinearHead>(feature_dim, num_classes, rng);
}

}  // namespace fedcl::nn
