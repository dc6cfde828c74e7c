// One training step and batched evaluation: the loop bodies shared by pretraining, the device
// learner and the simulator.
#ifndef FEDCL_CORE_NN_TRAINING_H_
#define FEDCL_CORE_NN_TRAINING_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/nn/model.h"
#include "core/nn/optimizer.h"

namespace fedcl::nn {

// How a device trains locally each round (algorithms.md §1.4: plain SGD, I = 5, B = 16, η = 0.1
// in the FedAU reference runs). The server sends it with each round's work.
struct Recipe {
  int local_steps = 5;            // optimizer steps per round, in [1, 100000]
  int batch_size = 16;            // samples per step, in [1, 65536]
  float learning_rate = 0.1f;     // > 0
  std::string optimizer = "sgd";  // "sgd" or "adamw"; a fresh optimizer every round
  float momentum = 0.0f;          // SGD momentum in [0, 1)
  float weight_decay = 0.0f;      // >= 0
  float clip_grad_norm = 0.0f;    // per-step gradient clip, 0 for none
  // InvalidArgument naming the field out of range.
  absl::Status Validate() const;
};

// A fresh optimizer for `recipe` (SGD with momentum and weight decay, or AdamW).
std::unique_ptr<Optimizer> MakeOptimizer(const Recipe& recipe);

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
