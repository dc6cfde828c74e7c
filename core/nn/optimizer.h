// Optimizers over ParameterSets, with PyTorch's update rules so that hyperparameters carry over.
//
//   nn::AdamW adamw({.learning_rate = 1e-3f, .weight_decay = 0.05f});
//   model.ZeroGrads(); ...; model.Backward(dlogits);
//   nn::ClipGradNorm(model.parameter_sets(), 1.0f);
//   adamw.Step(model.parameter_sets());
//
// Only trainable tensors move. State (momentum, moments) is kept per ParameterSet, created on the
// first step that sees it, and dropped by Reset(); a set must keep its layout while it has state.
// Deterministic: no threads, fixed order. Not thread-safe.
#ifndef FEDCL_CORE_NN_OPTIMIZER_H_
#define FEDCL_CORE_NN_OPTIMIZER_H_

#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "core/nn/parameter_set.h"

namespace fedcl::nn {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of every trainable tensor in `sets` from its gradient.
  virtual void Step(const std::vector<ParameterSet*>& sets) = 0;
  // Forgets all state (as a freshly created optimizer).
  virtual void Reset() = 0;
  virtual float learning_rate() const = 0;
  virtual void set_learning_rate(float learning_rate) = 0;
};

struct SgdOptions {
  float learning_rate = 0.01f;  // > 0
  float momentum = 0.0f;        // in [0, 1)
  float weight_decay = 0.0f;    // L2 added to the gradient (PyTorch SGD semantics), >= 0
  bool nesterov = false;        // needs momentum > 0
  absl::Status Validate() const;
};

// PyTorch SGD: g ← ∇ + wd·w; b ← μ·b + g (b = g on the first step); w ← w − lr·(nesterov ?
// g + μ·b : b).
class Sgd final : public Optimizer {
 public:
  explicit Sgd(const SgdOptions& options) : options_(options) {}
  void Step(const std::vector<ParameterSet*>& sets) override;
  void Reset() override { momentum_.clear(); }
  float learning_rate() const override { return options_.learning_rate; }
  void set_learning_rate(float lr) override { options_.learning_rate = lr; }

 private:
  SgdOptions options_;
  absl::flat_hash_map<const ParameterSet*, AlignedFloats> momentum_;
};

struct AdamWOptions {
  float learning_rate = 1e-3f;  // > 0
  float beta1 = 0.9f;           // in [0, 1)
  float beta2 = 0.999f;         // in [0, 1)
  float epsilon = 1e-8f;        // > 0
  float weight_decay = 0.01f;   // decoupled: w ← w·(1 − lr·wd), >= 0
  absl::Status Validate() const;
};

// PyTorch AdamW with bias correction.
class AdamW final : public Optimizer {
 public:
  explicit AdamW(const AdamWOptions& options) : options_(options) {}
  void Step(const std::vector<ParameterSet*>& sets) override;
  void Reset() override { state_.clear(); }
  float learning_rate() const override { return options_.learning_rate; }
  void set_learning_rate(float lr) override { options_.learning_rate = lr; }

 private:
  struct State {
    AlignedFloats m, v;
    int64_t steps = 0;
  };
  AdamWOptions options_;
  absl::flat_hash_map<const ParameterSet*, State> state_;
};

// Scales the gradients of all trainable tensors so their joint L2 norm is at most `max_norm`
// (if max_norm > 0). Returns the norm before clipping.
float ClipGradNorm(const std::vector<ParameterSet*>& sets, float max_norm);

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_OPTIMIZER_H_
