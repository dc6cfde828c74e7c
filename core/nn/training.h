// One training step and batched evaluation: the loop bodies shared by pretraining, the device
// learner and the simulator.
#ifndef FEDCL_CORE_NN_TRAINING_H_
#define FEDCL_CORE_NN_TRAINING_H_

#include <cstdint>

#include "absl/types/span.h"
#include "core/nn/model.h"
#include "core/nn/optimizer.h"

namespace fedcl::nn {

struct TrainStepOptions {
  float clip_grad_norm = 0.0f;  // 0 = no clipping
};

// Zero gradients, forward, mean cross-entropy, backward, optional clipping, optimizer step.
// Returns the batch loss (before the step).
float TrainStep(Model& model, Optimizer& optimizer, ConstMatrixRef images,
                absl::Span<const int32_t> labels, const TrainStepOptions& options = {});

struct EvalResult {
  double loss = 0.0;      // mean cross-entropy
  double accuracy = 0.0;  // top-1, in [0, 1]
  int64_t samples = 0;
};

// Evaluates in batches of `batch_size` rows (inference mode; nothing is kept for backward).
EvalResult Evaluate(Model& model, ConstMatrixRef images, absl::Span<const int32_t> labels,
                    int batch_size = 256);

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_TRAINING_H_
