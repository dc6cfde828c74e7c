#include "core/nn/training.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/nn/loss.h"

namespace fedcl::nn {

absl::Status Recipe::Validate() const {
  auto bad = [](absl::string_view field, auto value) {
    return absl::InvalidArgumentError(
        absl::StrCat("recipe: ", field, " = ", value, " is out of range"));
  };
  if (local_steps < 1 || local_steps > 100000) return bad("local_steps", local_steps);
  if (batch_size < 1 || batch_size > 65536) return bad("batch_size", batch_size);
  if (!(learning_rate > 0.0f) || !std::isfinite(learning_rate))
    return bad("learning_rate", learning_rate);
  if (optimizer != "sgd" && optimizer != "adamw") {
    return absl::InvalidArgumentError(
        absl::StrCat("recipe: unknown optimizer '", optimizer, "' (expected sgd or adamw)"));
  }
  if (!(momentum >= 0.0f && momentum < 1.0f)) return bad("momentum", momentum);
  if (!(weight_decay >= 0.0f) || !std::isfinite(weight_decay))
    return bad("weight_decay", weight_decay);
  if (!(clip_grad_norm >= 0.0f) || !std::isfinite(clip_grad_norm)) {
    return bad("clip_grad_norm", clip_grad_norm);
  }
  return absl::OkStatus();
}

std::unique_ptr<Optimizer> MakeOptimizer(const Recipe& recipe) {
  if (recipe.optimizer == "adamw") {
    return std::make_unique<AdamW>(
        AdamWOptions{.learning_rate = recipe.learning_rate, .weight_decay = recipe.weight_decay});
  }
  return std::make_unique<Sgd>(SgdOptions{.learning_rate = recipe.learning_rate,
                                          .momentum = recipe.momentum,
                                          .weight_decay = recipe.weight_decay});
}

float TrainStep(Model& model, Optimizer& optimizer, ConstMatrixRef images,
                absl::Span<const int32_t> labels, const TrainStepOptions& options) {
  // Thread-local so the step allocates nothing after the first call with a given batch size.
  thread_local Matrix dlogits;
  model.ZeroGrads();
  const Matrix& logits = model.Forward(images, /*training=*/true);
  float loss = SoftmaxCrossEntropy(logits, labels, &dlogits);
  model.Backward(dlogits);
  std::vector<ParameterSet*> sets = model.parameter_sets();
  if (options.clip_grad_norm > 0.0f) ClipGradNorm(sets, options.clip_grad_norm);
  optimizer.Step(sets);
  return loss;
}

EvalResult Evaluate(Model& model, ConstMatrixRef images, absl::Span<const int32_t> labels,
                    int batch_size) {
  EvalResult result;
  std::vector<int32_t> predicted;
  double loss_sum = 0.0;
  int64_t correct = 0;
  const int64_t n = images.rows();
  for (int64_t first = 0; first < n; first += batch_size) {
    const int64_t count = std::min<int64_t>(batch_size, n - first);
    const Matrix& logits = model.Forward(images.middleRows(first, count), /*training=*/false);
    auto batch_labels = labels.subspan(first, count);
    loss_sum += SoftmaxCrossEntropy(logits, batch_labels, nullptr) * count;
    ArgmaxRows(logits, predicted);
    for (int64_t i = 0; i < count; ++i) correct += predicted[i] == batch_labels[i];
  }
  result.samples = n;
  if (n > 0) {
    result.loss = loss_sum / n;
    result.accuracy = static_cast<double>(correct) / n;
  }
  return result;
}

}  // namespace fedcl::nn
