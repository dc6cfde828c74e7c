#include "core/nn/activations.h"

#include <unsupported/Eigen/SpecialFunctions>

namespace fedcl::nn {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

}  // namespace

void ReluForward(MatrixRef x) { x = x.cwiseMax(0.0f); }

void ReluBackward(ConstMatrixRef y, MatrixRef dy) { dy = (y.array() > 0.0f).select(dy, 0.0f); }

void GeluForward(ConstMatrixRef x, Matrix& y) {
  EnsureShape(y, x.rows(), x.cols());
  // Eigen's vectorised erf is a rational approximation accurate to a few ulp.
  y.array() = 0.5f * x.array() * (1.0f + (x.array() * kInvSqrt2).erf());
}

void GeluBackward(ConstMatrixRef x, MatrixRef dy) {
  auto xa = x.array();
  auto cdf = 0.5f * (1.0f + (xa * kInvSqrt2).erf());
  auto pdf = kInvSqrt2Pi * (-0.5f * xa.square()).exp();
  dy.array() *= cdf + xa * pdf;
}

}  // namespace fedcl::nn
