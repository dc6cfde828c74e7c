#include "core/nn/training.h"

#include <algorithm>
#include <vector>

#include "core/nn/loss.h"

namespace fedcl::nn {

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
