// Small model configurations for fast, exhaustive tests of the backbones.
#ifndef FEDCL_TESTS_CORE_NN_TEST_MODELS_H_
#define FEDCL_TESTS_CORE_NN_TEST_MODELS_H_

#include <string>
#include <vector>

#include "core/nn/model_config.h"

namespace fedcl::nn::testing {

// A tiny model of each backbone kind on `channels`×8×8 images with 4 classes.
inline ModelConfig TinyConfig(BackboneKind kind, int channels = 1,
                              HeadKind head = HeadKind::kLinear) {
  ModelConfig config;
  config.backbone = kind;
  config.image_channels = channels;
  config.image_height = 8;
  config.image_width = 8;
  config.num_classes = 4;
  config.head = head;
  config.mlp.hidden = {12, 10};
  config.cnn = {3, 4, 8};
  config.vit.patch = 4;
  config.vit.dim = 8;
  config.vit.depth = 2;
  config.vit.heads = 2;
  config.vit.mlp_ratio = 2;
  return config;
}

inline std::string KindName(BackboneKind kind) { return std::string(BackboneKindName(kind)); }

inline const std::vector<BackboneKind>& AllBackbones() {
  static const std::vector<BackboneKind> kinds = {BackboneKind::kMlp, BackboneKind::kCnn,
                                                  BackboneKind::kVit};
  return kinds;
}

}  // namespace fedcl::nn::testing

#endif  // FEDCL_TESTS_CORE_NN_TEST_MODELS_H_
