#include "core/nn/activations.h"

#include <unsupported/Eigen/SpecialFunctions>

namespace fedcl::nn {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

}  // namespace

void ReluForward(MatrixRef x) { x = x.cwiseMax(0.0f); }

void ReluBackward(ConstMatrixRef y, MatrixRef dy) { dy = (y.array() > 0.0f).select(dy, 0.0f); }

void GeluForward(ConstMatrixRef x, Matrix& y, Matrix* cdf) {
  EnsureShape(y, x.rows(), x.cols());
  // Eigen's vectorised erf is a rational approximation accurate to a few ulp.
  if (cdf == nullptr) {
    y.array() = 0.5f * x.array() * (1.0f + (x.array() * kInvSqrt2).erf());
    return;
  }
  EnsureShape(*cdf, x.rows(), x.cols());
  cdf->array() = 0.5f * (1.0f + (x.array() * kInvSqrt2).erf());
  y.array() = x.array() * cdf->array();
}

void GeluBackward(ConstMatrixRef x, MatrixRef dy, const Matrix* cdf) {
  auto xa = x.array();
  auto pdf = kInvSqrt2Pi * (-0.5f * xa.square()).exp();
  if (cdf != nullptr) {
    dy.array() *= cdf->array() + xa * pdf;
  } else {
    dy.array() *= 0.5f * (1.0f + (xa * kInvSqrt2).erf()) + xa * pdf;
  }
}

}  // namespace fedcl::nn
