#include "core/nn/mlp_backbone.h"

#include "absl/strings/str_cat.h"
#include "core/nn/activations.h"

namespace fedcl::nn {

MlpBackbone::MlpBackbone(const ModelConfig& config, base::Rng& rng) : Backbone("backbone") {
  int width = config.input_size();
  for (size_t i = 0; i < config.mlp.hidden.size(); ++i) {
    std::string name = absl::StrCat("layers.", i);
    auto layer = std::make_unique<Linear>(params_, name, width, config.mlp.hidden[i]);
    layer->InitKaimingNormal(rng);
    ssf_.push_back(
        std::make_unique<SsfSite>(name, layer->out_features(), ChannelAxis::kColumns, layer.get()));
    width = layer->out_features();
    lora_targets_.push_back(layer.get());
    ssf_sites_.push_back(ssf_.back().get());
    layers_.push_back(std::move(layer));
  }
  outputs_.resize(layers_.size());
}

const Matrix& MlpBackbone::Forward(ConstMatrixRef images, bool training) {
  if (training) input_ = images;
  for (size_t i = 0; i < layers_.size(); ++i) {
    ConstMatrixRef x = i == 0 ? images : ConstMatrixRef(outputs_[i - 1]);
    layers_[i]->Forward(x, outputs_[i]);
    ssf_[i]->Forward(outputs_[i], training);
    ReluForward(outputs_[i]);
  }
  return outputs_.back();
}

void MlpBackbone::Backward(ConstMatrixRef dfeatures) {
  std::vector<bool> trainable_before(layers_.size(), false);
  bool so_far = false;
  for (size_t i = 0; i < layers_.size(); ++i) {
    trainable_before[i] = so_far;
    so_far = so_far || layers_[i]->HasTrainable() || ssf_[i]->HasTrainable();
  }
  dcur_ = dfeatures;
  for (int i = static_cast<int>(layers_.size()) - 1; i >= 0; --i) {
    ReluBackward(outputs_[i], dcur_);
    ssf_[i]->Backward(dcur_);
    ConstMatrixRef x = i == 0 ? ConstMatrixRef(input_) : ConstMatrixRef(outputs_[i - 1]);
    layers_[i]->Backward(x, dcur_, trainable_before[i] ? &dprev_ : nullptr);
    if (!trainable_before[i]) return;
    std::swap(dcur_, dprev_);
  }
}

}  // namespace fedcl::nn
