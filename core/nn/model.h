// A backbone plus a head: what a device trains and runs.
//
//   FEDCL_ASSIGN_OR_RETURN(auto model, nn::Model::Create(config, /*seed=*/1));
//   model->SetBackboneTrainable(false);           // frozen backbone...
//   // ...plus PET modules attached by peft, which register their parameter sets here.
//   nn::Sgd sgd({.learning_rate = 0.05f, .momentum = 0.9f});
//   float loss = nn::TrainStep(*model, sgd, images, labels);
//
// The model owns its backbone and head. PET modules are owned elsewhere (peft::PetModule) and
// register their ParameterSet while attached, so that parameter_sets() lists everything an
// optimizer should see. Not thread-safe: a model is one replica, used by one thread at a time.
#ifndef FEDCL_CORE_NN_MODEL_H_
#define FEDCL_CORE_NN_MODEL_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/nn/backbone.h"
#include "core/nn/head.h"
#include "core/nn/model_config.h"

namespace fedcl::nn {

class Model {
 public:
  // InvalidArgument if the config does not validate. The same config and seed give bit-identical
  // initial weights.
  static absl::StatusOr<std::unique_ptr<Model>> Create(const ModelConfig& config, uint64_t seed);

  const ModelConfig& config() const { return config_; }
  Backbone& backbone() { return *backbone_; }
  const Backbone& backbone() const { return *backbone_; }
  Head& head() { return *head_; }
  const Head& head() const { return *head_; }

  // images [n, C·H·W] → logits [n, num_classes]; valid until the next Forward.
  const Matrix& Forward(ConstMatrixRef images, bool training);
  // Features of the last Forward.
  const Matrix& features() const { return *features_; }
  // Backpropagates dlogits through head and backbone into every trainable tensor.
  void Backward(ConstMatrixRef dlogits);

  // Backbone, head, then registered module sets, in registration order.
  std::vector<ParameterSet*> parameter_sets();
  void RegisterModule(ParameterSet* module);
  void UnregisterModule(ParameterSet* module);

  void SetBackboneTrainable(bool trainable) { backbone_->parameters().SetAllTrainable(trainable); }
  void ZeroGrads();

 private:
  Model(const ModelConfig& config, std::unique_ptr<Backbone> backbone, std::unique_ptr<Head> head);
  ModelConfig config_;
  std::unique_ptr<Backbone> backbone_;
  std::unique_ptr<Head> head_;
  std::vector<ParameterSet*> modules_;
  const Matrix* features_ = nullptr;
  Matrix dfeatures_;
};

// A fresh model like `from` but with `num_classes` outputs: the backbone's values copied, and the
// head's first rows (the classes `from` was trained on, row-major) copied where both have them;
// the other head rows keep `seed`'s initial values. InvalidArgument as Model::Create.
absl::StatusOr<std::unique_ptr<Model>> CopyWithClasses(const Model& from, int num_classes,
                                                       uint64_t seed);

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_MODEL_H_
