// The bottleneck adapter of SEMA (algorithms.md §4.2): f(x) = W_up·ReLU(W_down·x + b_down) + b_up,
// applied per token, parallel to a transformer block's MLP:
//
//   x   ← x + Attn(LN1(x))
//   out ← x + MLP(LN2(x)) + f(x)
//
// The branch is a site: every block has one, inactive (f ≡ 0, no cost) until peft binds an
// adapter's four tensors or an extension (BranchExtension) takes it over. Exactly
// up(relu(down(x))), no scalar and no dropout, as in the reference code.
#ifndef FEDCL_CORE_NN_ADAPTER_BRANCH_H_
#define FEDCL_CORE_NN_ADAPTER_BRANCH_H_

#include <string>

#include "core/nn/parameter_set.h"
#include "core/nn/tensor.h"

namespace fedcl::nn {

// Something that replaces a branch's single adapter: SEMA's mixture of adapters (core/cl), whose
// router reads the token mean of the block's input rather than the rows the adapter sees.
class BranchExtension {
 public:
  virtual ~BranchExtension() = default;
  // out += f(x1). x1 holds the rows the block computes ([batch·tokens, dim], or one CLS row per
  // sample in a cls_only block); block_input is the block's whole input, [batch·tokens, dim].
  virtual void ForwardAdd(ConstMatrixRef x1, ConstMatrixRef block_input, int batch, int tokens,
                          MatrixRef out) = 0;
  // Accumulates the gradients of trainable tensors from dout; dx1 += ∂f/∂x1·dout unless null.
  virtual void Backward(ConstMatrixRef dout, Matrix* dx1) = 0;
  // After Backward: dblock_input += the gradient reaching the block input through f's dependence
  // on it (the router's token mean).
  virtual void AddBlockInputGradient(MatrixRef dblock_input) const = 0;
  virtual bool HasTrainable() const = 0;
};

struct AdapterBinding {
  ParamRef down_weight;  // [bottleneck, dim]
  ParamRef down_bias;    // [bottleneck]
  ParamRef up_weight;    // [dim, bottleneck]
  ParamRef up_bias;      // [dim]
  int bottleneck = 0;
};

class AdapterBranch {
 public:
  AdapterBranch(std::string name, int dim) : name_(std::move(name)), dim_(dim) {}

  void Bind(const AdapterBinding& binding) { binding_ = binding; }
  // While set (not owned), the extension computes the branch instead of the bound adapter.
  void SetExtension(BranchExtension* extension) { extension_ = extension; }
  BranchExtension* extension() const { return extension_; }
  void Unbind() { binding_ = AdapterBinding(); }
  bool active() const { return binding_.down_weight.bound(); }
  bool HasTrainable() const;

  // out += f(x). Does nothing when inactive.
  void ForwardAdd(ConstMatrixRef x, MatrixRef out);
  // Accumulates the adapter's gradients; dx += ∂f/∂x·dout. Does nothing when inactive.
  void Backward(ConstMatrixRef x, ConstMatrixRef dout, Matrix* dx);

  const std::string& name() const { return name_; }
  int dim() const { return dim_; }
  const AdapterBinding& binding() const { return binding_; }

 private:
  std::string name_;
  int dim_;
  AdapterBinding binding_;
  BranchExtension* extension_ = nullptr;
  Matrix hidden_;  // ReLU(W_down·x + b_down), [rows, bottleneck]
  Matrix dhidden_;
};

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_ADAPTER_BRANCH_H_
