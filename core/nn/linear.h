// Fully connected layer y = x·Wᵀ + b, with an optional LoRA branch.
//
// W is [out, in] (PyTorch layout), b is [out]. Rows of x are samples (or tokens). A LoRA binding
// (peft/lora.h creates them) adds y += s·(x·Aᵀ)·Bᵀ with A [rank, in] and B [out, rank].
//
// Backward(x, dy, dx) must follow the Forward(x, ...) of the same batch: the LoRA branch keeps
// x·Aᵀ between the two calls. Gradients are accumulated (+=) into trainable tensors only, so a
// frozen W costs no weight-gradient product. Not thread-safe; one instance per model replica.
#ifndef FEDCL_CORE_NN_LINEAR_H_
#define FEDCL_CORE_NN_LINEAR_H_

#include <string>

#include "core/base/random.h"
#include "core/nn/fold.h"
#include "core/nn/parameter_set.h"
#include "core/nn/tensor.h"

namespace fedcl::nn {

struct LoraBinding {
  ParamRef a;          // [rank, in]
  ParamRef b;          // [out, rank]
  float scale = 1.0f;  // s = alpha / rank
  int rank = 0;
};

class Linear final : public ScaleShiftFoldable {
 public:
  // Adds "<name>.weight" (and "<name>.bias") to `params`, zero-initialised.
  Linear(ParameterSet& params, const std::string& name, int in_features, int out_features,
         bool bias = true);

  // PyTorch's default init: W, b ~ U(±1/sqrt(in)).
  void InitDefault(base::Rng& rng);
  // Kaiming-normal W (for ReLU nets, as in the FedAU reference models), zero bias.
  void InitKaimingNormal(base::Rng& rng);

  // y ← x·Wᵀ + b (+ LoRA). `y` is resized to [rows(x), out].
  void Forward(ConstMatrixRef x, Matrix& y);
  // Accumulates dW, db and the LoRA gradients; writes dx ← dy·W (+ LoRA) unless dx is null.
  void Backward(ConstMatrixRef x, ConstMatrixRef dy, Matrix* dx);

  void AttachLora(const LoraBinding& lora) { lora_ = lora; }
  void DetachLora() { lora_ = LoraBinding(); }
  bool has_lora() const { return lora_.a.bound(); }
  const LoraBinding& lora() const { return lora_; }
  // W ← W + s·B·A, then detaches the LoRA branch. Exact up to float rounding.
  void MergeLora();

  void FoldScaleShift(const float* gamma, const float* beta) override;
  int fold_channels() const override { return out_; }

  // True if W, b or an attached LoRA has trainable tensors.
  bool HasTrainable() const;

  const std::string& name() const { return name_; }
  int in_features() const { return in_; }
  int out_features() const { return out_; }
  const ParamRef& weight() const { return weight_; }
  const ParamRef& bias() const { return bias_; }

 private:
  std::string name_;
  int in_;
  int out_;
  ParamRef weight_;
  ParamRef bias_;
  LoraBinding lora_;
  Matrix lora_hidden_;  // x·Aᵀ from the last Forward, [rows, rank]
  Matrix lora_dhidden_;
};

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_LINEAR_H_
