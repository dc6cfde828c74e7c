#include "core/cl/label_free.h"

#include <cmath>

#include "absl/strings/match.h"
#include "core/nn/loss.h"

namespace fedcl::cl {
namespace {

bool Adaptable(const std::string& name) {
  if (absl::StrContains(name, "ssf_scale") || absl::StrContains(name, "ssf_shift")) return true;
  // LayerNorm affine: "...norm....weight|bias" (norm1, norm2, the final norm).
  return absl::StrContains(name, "norm") &&
         (absl::EndsWith(name, ".weight") || absl::EndsWith(name, ".bias"));
}

}  // namespace

LabelFreeAdapter::LabelFreeAdapter(nn::Model& model, const LabelFreeOptions& options)
    : model_(model), filter_(options.filter) {
  MarkTrainable();
  optimizer_ = std::make_unique<nn::Sgd>(
      nn::SgdOptions{.learning_rate = options.learning_rate, .momentum = options.momentum});
}

void LabelFreeAdapter::MarkTrainable() {
  trainable_values_ = 0;
  for (nn::ParameterSet* set : model_.parameter_sets()) {
    for (int i = 0; i < set->num_tensors(); ++i) {
      const bool adapt = Adaptable(set->info(i).name);
      set->set_trainable(i, adapt);
      if (adapt) trainable_values_ += set->info(i).size;
    }
  }
}

absl::StatusOr<AdaptStep> LabelFreeAdapter::Adapt(nn::ConstMatrixRef images) {
  AdaptStep step;
  step.seen = images.rows();
  model_.ZeroGrads();
  const nn::Matrix& logits = model_.Forward(images, /*training=*/true);
  absl::StatusOr<std::vector<bool>> keep = filter_.Select(logits);
  if (!keep.ok()) return keep.status();
  for (bool k : *keep) step.used += k ? 1 : 0;
  if (step.used == 0) return step;
  nn::Softmax(logits, probabilities_);
  const std::vector<float> entropy = SampleFilter::Entropies(probabilities_);
  dlogits_ = nn::Matrix::Zero(logits.rows(), logits.cols());
  for (int64_t i = 0; i < logits.rows(); ++i) {
    if (!(*keep)[i]) continue;
    const double h = entropy[i];
    step.entropy += h / static_cast<double>(step.used);
    for (int64_t c = 0; c < logits.cols(); ++c) {
      const double p = probabilities_(i, c);
      const double log_p = p > 0 ? std::log(p) : 0.0;
      dlogits_(i, c) = static_cast<float>(-p * (log_p + h) / static_cast<double>(step.used));
    }
  }
  model_.Backward(dlogits_);
  optimizer_->Step(model_.parameter_sets());
  return step;
}

}  // namespace fedcl::cl
