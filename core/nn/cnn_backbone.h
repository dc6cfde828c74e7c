// The FedAU reference CNN (algorithms.md §1.8), without its output layer (that is the head):
//
//   conv1 3×3 (C→32) → SSF → ReLU → maxpool 2 → conv2 3×3 (32→32) → SSF → ReLU → maxpool 2
//   → flatten (C, H, W order, as PyTorch) → fc (1568→128) → SSF → ReLU → features
//
// SSF sites are per channel after each convolution ("conv1", "conv2") and per feature after the
// hidden Linear ("fc"); "fc" also accepts LoRA. Convolutions run on the channel-rows layout
// (tensor.h).
#ifndef FEDCL_CORE_NN_CNN_BACKBONE_H_
#define FEDCL_CORE_NN_CNN_BACKBONE_H_

#include "core/nn/backbone.h"
#include "core/nn/conv2d.h"

namespace fedcl::nn {

class CnnBackbone final : public Backbone {
 public:
  CnnBackbone(const ModelConfig& config, base::Rng& rng);

  BackboneKind kind() const override { return BackboneKind::kCnn; }
  int feature_dim() const override { return fc_.out_features(); }
  const Matrix& Forward(ConstMatrixRef images, bool training) override;
  void Backward(ConstMatrixRef dfeatures) override;

 private:
  ConvGeometry input_geometry_;
  ConvGeometry conv1_out_, pool1_out_, conv2_out_, pool2_out_;
  Conv2d conv1_;
  SsfSite conv1_ssf_;
  MaxPool2d pool1_;
  Conv2d conv2_;
  SsfSite conv2_ssf_;
  MaxPool2d pool2_;
  Linear fc_;
  SsfSite fc_ssf_;

  int batch_ = 0;
  Matrix input_;              // [C, batch·H·W]
  Matrix y1_, p1_, y2_, p2_;  // conv/pool outputs, channel rows
  Matrix flat_;               // [batch, C2·H/4·W/4]
  Matrix features_;           // [batch, hidden]
  Matrix dfeatures_, dflat_, dp2_, dy2_, dp1_, dy1_;
};

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_CNN_BACKBONE_H_
