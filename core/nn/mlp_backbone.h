// A fully connected backbone: for each hidden width, Linear → SSF site → ReLU. Features are the
// last hidden layer's activations. Sites and LoRA targets are named "layers.<i>".
#ifndef FEDCL_CORE_NN_MLP_BACKBONE_H_
#define FEDCL_CORE_NN_MLP_BACKBONE_H_

#include <memory>
#include <vector>

#include "core/nn/backbone.h"

namespace fedcl::nn {

class MlpBackbone final : public Backbone {
 public:
  MlpBackbone(const ModelConfig& config, base::Rng& rng);

  BackboneKind kind() const override { return BackboneKind::kMlp; }
  int feature_dim() const override { return layers_.back()->out_features(); }
  const Matrix& Forward(ConstMatrixRef images, bool training) override;
  void Backward(ConstMatrixRef dfeatures) override;

 private:
  std::vector<std::unique_ptr<Linear>> layers_;
  std::vector<std::unique_ptr<SsfSite>> ssf_;
  Matrix input_;
  std::vector<Matrix> outputs_;  // post-ReLU activation of each layer
  Matrix dcur_, dprev_;
};

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_MLP_BACKBONE_H_
