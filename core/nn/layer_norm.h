// Layer normalisation over the last dimension: y = (x − mean)/sqrt(var + eps) ⊙ w + b.
//
// Forward keeps the normalised input and the reciprocal standard deviation per row, which is all
// Backward needs. Backward must follow the Forward of the same batch.
#ifndef FEDCL_CORE_NN_LAYER_NORM_H_
#define FEDCL_CORE_NN_LAYER_NORM_H_

#include <string>

#include "core/nn/fold.h"
#include "core/nn/parameter_set.h"
#include "core/nn/tensor.h"

namespace fedcl::nn {

class LayerNorm final : public ScaleShiftFoldable {
 public:
  // Adds "<name>.weight" (ones) and "<name>.bias" (zeros). eps = 1e-5 is PyTorch's default.
  LayerNorm(ParameterSet& params, const std::string& name, int dim, float eps = 1e-5f);

  void Forward(ConstMatrixRef x, Matrix& y);
  // Accumulates dw, db if trainable; writes dx unless null.
  void Backward(ConstMatrixRef dy, Matrix* dx);

  void FoldScaleShift(const float* gamma, const float* beta) override;
  int fold_channels() const override { return dim_; }
  bool HasTrainable() const { return weight_.trainable() || bias_.trainable(); }

  const ParamRef& weight() const { return weight_; }
  const ParamRef& bias() const { return bias_; }

 private:
  int dim_;
  float eps_;
  ParamRef weight_;
  ParamRef bias_;
  Matrix normalized_;  // x̂, [rows, dim]
  Vector rstd_;        // 1/sqrt(var + eps), [rows]
  Matrix dnormalized_;
};

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_LAYER_NORM_H_
