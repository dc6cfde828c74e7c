#include "core/nn/backbone.h"

#include "core/nn/cnn_backbone.h"
#include "core/nn/mlp_backbone.h"
#include "core/nn/vit_backbone.h"

namespace fedcl::nn {

std::unique_ptr<Backbone> CreateBackbone(const ModelConfig& config, base::Rng& rng) {
  switch (config.backbone) {
    case BackboneKind::kMlp:
      return std::make_unique<MlpBackbone>(config, rng);
    case BackboneKind::kCnn:
      return std::make_unique<CnnBackbone>(config, rng);
    case BackboneKind::kVit:
      return std::make_unique<VitBackbone>(config, rng);
  }
  return nullptr;
}

}  // namespace fedcl::nn
