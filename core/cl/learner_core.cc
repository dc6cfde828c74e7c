#include "core/cl/learner_core.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/nn/loss.h"
#include "core/nn/vit_backbone.h"

namespace fedcl::cl {
namespace {

constexpr float kMasked = -1e9f;  // a masked logit: softmax 0, gradient 0, no NaN

}  // namespace

ood::OodBatch Inspection::Batch(const ood::FeatureNeeds& needs) const {
  ood::OodBatch batch;
  if (needs.logits) batch.logits = &logits;
  if (needs.features) batch.features = &features;
  if (needs.layers) {
    for (const nn::Matrix& m : cls_after_block) batch.layers.push_back(&m);
  }
  if (needs.token_mean) batch.token_mean = &token_mean_last;
  return batch;
}

LearnerCore::LearnerCore(std::unique_ptr<nn::Model> model, const CoreOptions& options)
    : options_(options),
      model_(std::move(model)),
      rng_(options.seed),
      sgd_({.learning_rate = options.learning_rate,
            .momentum = options.momentum,
            .weight_decay = options.weight_decay}) {}

absl::Status LearnerCore::SetTaskClasses(const std::vector<int>& classes) {
  std::vector<bool> flags;
  if (!classes.empty()) {
    flags.assign(num_classes(), false);
    for (int c : classes) {
      if (c < 0 || c >= num_classes())
        return absl::InvalidArgumentError(
            absl::StrCat("task class ", c, " is outside [0, ", num_classes(), ")"));
      flags[c] = true;
    }
  }
  task_classes_ = std::move(flags);
  return absl::OkStatus();
}

std::vector<int> LearnerCore::TaskClasses() const {
  std::vector<int> out;
  for (size_t c = 0; c < task_classes_.size(); ++c)
    if (task_classes_[c]) out.push_back(static_cast<int>(c));
  return out;
}

absl::Status LearnerCore::StartTask(const std::vector<int>& classes) {
  if (absl::Status s = SetTaskClasses(classes); !s.ok()) return s;
  ++task_;
  task_steps_ = 0;
  // Classes the finished task taught are now "old".
  if (learned_classes_.empty()) learned_classes_.assign(num_classes(), false);
  for (int c = 0; c < num_classes(); ++c) {
    learned_classes_[c] =
        learned_classes_[c] || (c < static_cast<int>(task_labels_.size()) && task_labels_[c]);
  }
  task_labels_.assign(num_classes(), false);
  return absl::OkStatus();
}

void LearnerCore::SeeLabels(absl::Span<const int32_t> labels) {
  if (task_labels_.empty()) task_labels_.assign(num_classes(), false);
  for (int32_t y : labels) task_labels_[y] = true;
}

void LearnerCore::SetTaskState(int task, int64_t steps, std::vector<bool> learned,
                               std::vector<bool> seen) {
  task_ = task;
  task_steps_ = steps;
  learned_classes_ = std::move(learned);
  task_labels_ = std::move(seen);
}

nn::Matrix LearnerCore::MaskedLogits(const nn::Matrix& logits) const {
  nn::Matrix masked = logits;
  if (task_classes_.empty()) return masked;
  for (int c = 0; c < masked.cols(); ++c)
    if (!task_classes_[c]) masked.col(c).setConstant(kMasked);
  return masked;
}

float LearnerCore::StepOn(nn::ConstMatrixRef images, absl::Span<const int32_t> labels,
                          const std::vector<nn::ParameterSet*>& sets,
                          const std::function<void()>& after_backward) {
  for (nn::ParameterSet* s : sets) s->ZeroGrads();
  model_->ZeroGrads();
  const nn::Matrix logits = MaskedLogits(model_->Forward(images, /*training=*/true));
  nn::Matrix dlogits;
  const float loss = nn::SoftmaxCrossEntropy(logits, labels, &dlogits);
  model_->Backward(dlogits);
  if (after_backward) after_backward();
  sgd_.Step(sets);
  ++task_steps_;
  return loss;
}

void LearnerCore::CopyHooks(Inspection* hooks, int64_t start, int64_t rows) {
  hooks->features.middleRows(start, rows) = model_->features();
  if (model_->config().backbone != nn::BackboneKind::kVit) return;
  auto& backbone = static_cast<nn::VitBackbone&>(model_->backbone());
  hooks->token_mean_last.middleRows(start, rows) =
      backbone.TokenMeanOfBlockInput(backbone.depth() - 1);
  for (int b = 0; b < backbone.depth(); ++b)
    hooks->cls_after_block[b].middleRows(start, rows) = backbone.ClsAfterBlock(b);
}

void LearnerCore::FreezeLearnedHeadRows() {
  // SEMA (§4.4): old classes' logits get no gradient (their rows only see weight decay). In a
  // class-incremental task the mask already keeps them out of the loss; in a domain-incremental
  // one every class is old after the first task, so the head stays as task 0 left it and new
  // domains are learned by new adapters alone.
  nn::ParameterSet& head = model_->head().parameters();
  for (int t = 0; t < head.num_tensors(); ++t) {
    if (!head.trainable(t)) continue;
    const int64_t per_class = head.info(t).size / num_classes();
    for (size_t c = 0; c < learned_classes_.size(); ++c) {
      if (!learned_classes_[c]) continue;
      std::fill_n(head.grads(t) + c * per_class, per_class, 0.0f);
    }
  }
}

}  // namespace fedcl::cl
