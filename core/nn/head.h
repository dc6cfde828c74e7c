// Classification heads: features [n, F] → logits [n, C].
//
//   - LinearHead: logits = f·Wᵀ + b ("head.weight" [C, F], "head.bias" [C]); PyTorch default
//     init, as the FedAU reference keeps for its output layer.
//   - CosineHead: logits = σ · cos(f, w_c) ("head.weight" [C, F], "head.scale" [1]). Rows of W
//     can be set to class-mean features (prototypes, as SimpleCIL does) with SetPrototype. σ is
//     learnable and starts at 16: with σ = 1, softmax over cosines in [−1, 1] is nearly uniform
//     and training barely moves.
//
// Backward must follow the Forward of the same batch. Not thread-safe.
#ifndef FEDCL_CORE_NN_HEAD_H_
#define FEDCL_CORE_NN_HEAD_H_

#include <memory>

#include "core/base/random.h"
#include "core/nn/linear.h"
#include "core/nn/model_config.h"
#include "core/nn/parameter_set.h"
#include "core/nn/tensor.h"

namespace fedcl::nn {

class Head {
 public:
  virtual ~Head() = default;
  virtual HeadKind kind() const = 0;
  // Returns logits, valid until the next call.
  virtual const Matrix& Forward(ConstMatrixRef features) = 0;
  // Accumulates gradients; writes dfeatures unless null.
  virtual void Backward(ConstMatrixRef features, ConstMatrixRef dlogits, Matrix* dfeatures) = 0;

  ParameterSet& parameters() { return params_; }
  const ParameterSet& parameters() const { return params_; }
  int num_classes() const { return num_classes_; }
  int feature_dim() const { return feature_dim_; }

 protected:
  Head(int feature_dim, int num_classes)
      : params_("head"), feature_dim_(feature_dim), num_classes_(num_classes) {}
  ParameterSet params_;
  int feature_dim_;
  int num_classes_;
};

class LinearHead final : public Head {
 public:
  LinearHead(int feature_dim, int num_classes, base::Rng& rng);
  HeadKind kind() const override { return HeadKind::kLinear; }
  const Matrix& Forward(ConstMatrixRef features) override;
  void Backward(ConstMatrixRef features, ConstMatrixRef dlogits, Matrix* dfeatures) override;

 private:
  Linear fc_;
  Matrix logits_;
};

class CosineHead final : public Head {
 public:
  CosineHead(int feature_dim, int num_classes, base::Rng& rng);
  HeadKind kind() const override { return HeadKind::kCosine; }
  const Matrix& Forward(ConstMatrixRef features) override;
  void Backward(ConstMatrixRef features, ConstMatrixRef dlogits, Matrix* dfeatures) override;

  // Sets class `c`'s weight row to `prototype` ([F], e.g. a class-mean feature).
  void SetPrototype(int c, const float* prototype);

 private:
  ParamRef weight_;       // [C, F]
  ParamRef scale_;        // [1]
  Matrix unit_features_;  // f / ‖f‖
  Vector feature_norms_;
  Matrix unit_weights_;  // w_c / ‖w_c‖
  Vector weight_norms_;
  Matrix cosines_;  // [n, C]
  Matrix logits_;
  Matrix dunit_;  // workspaces
  Matrix dunit_weights_;
};

std::unique_ptr<Head> CreateHead(HeadKind kind, int feature_dim, int num_classes, base::Rng& rng);

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_HEAD_H_
