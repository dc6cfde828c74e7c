#include "core/nn/model.h"

#include <algorithm>

#include "core/base/status_macros.h"

namespace fedcl::nn {

absl::StatusOr<std::unique_ptr<Model>> Model::Create(const ModelConfig& config, uint64_t seed) {
  FEDCL_RETURN_IF_ERROR(config.Validate());
  base::Rng rng = base::Rng::ForStream(seed, {0x6d6f64656cULL /* "model" */});
  std::unique_ptr<Backbone> backbone = CreateBackbone(config, rng);
  std::unique_ptr<Head> head =
      CreateHead(config.head, backbone->feature_dim(), config.num_classes, rng);
  return std::unique_ptr<Model>(new Model(config, std::move(backbone), std::move(head)));
}

Model::Model(const ModelConfig& config, std::unique_ptr<Backbone> backbone,
             std::unique_ptr<Head> head)
    : config_(config), backbone_(std::move(backbone)), head_(std::move(head)) {}

const Matrix& Model::Forward(ConstMatrixRef images, bool training) {
  features_ = &backbone_->Forward(images, training);
  return head_->Forward(*features_);
}

void Model::Backward(ConstMatrixRef dlogits) {
  head_->Backward(*features_, dlogits, &dfeatures_);
  backbone_->Backward(dfeatures_);
}

std::vector<ParameterSet*> Model::parameter_sets() {
  std::vector<ParameterSet*> sets = {&backbone_->parameters(), &head_->parameters()};
  sets.insert(sets.end(), modules_.begin(), modules_.end());
  return sets;
}

void Model::RegisterModule(ParameterSet* module) {
  if (std::find(modules_.begin(), modules_.end(), module) == modules_.end()) {
    modules_.push_back(module);
  }
}

void Model::UnregisterModule(ParameterSet* module) {
  modules_.erase(std::remove(modules_.begin(), modules_.end(), module), modules_.end());
}

void Model::ZeroGrads() {
  // Frozen sets never receive gradients, so only trainable ones need clearing.
  for (ParameterSet* set : parameter_sets()) {
    if (set->any_trainable()) set->ZeroGrads();
  }
}

absl::StatusOr<std::unique_ptr<Model>> CopyWithClasses(const Model& from, int num_classes,
                                                       uint64_t seed) {
  ModelConfig config = from.config();
  config.num_classes = num_classes;
  FEDCL_ASSIGN_OR_RETURN(auto model, Model::Create(config, seed));
  model->backbone().parameters().flat_values() = from.backbone().parameters().flat_values();
  const ParameterSet& head = from.head().parameters();
  ParameterSet& to = model->head().parameters();
  for (int t = 0; t < head.num_tensors() && t < to.num_tensors(); ++t) {
    const int64_t n = std::min(head.info(t).size, to.info(t).size);
    std::copy(head.values(t), head.values(t) + n, to.values(t));
  }
  return model;
}

}  // namespace fedcl::nn
